"""Sending one request through the host's guarded client, waiting out the EHR's 429 and 503 answers.

The wait is bounded: at most :data:`MAX_TRIES` requests and :data:`MAX_WAIT_SECONDS` of waiting in all, well
within the host's time limit for a hook call (10 s by default). A longer ``Retry-After`` is not waited for at all:
the hook raises :class:`RetryLater` at once, and the host's worker calls again later with the same watermark.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from plugin_sdk import PluginContext

RETRY_STATUSES = frozenset({429, 503})
MAX_TRIES = 3
MAX_WAIT_SECONDS = 8.0
# Without a Retry-After: 1 s, then 2 s.
DEFAULT_BACKOFF_SECONDS = 1.0


class FhirError(Exception):
    """The EHR (or its token endpoint) answered with an error; ``status`` is the HTTP status, if there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryLater(FhirError):
    """The EHR is busy (429/503) for longer than a hook may wait: the host's worker should retry later."""


def retry_after_seconds(response: httpx.Response, now: datetime) -> float | None:
    """The wait ``Retry-After`` asks for, in seconds (delta-seconds or an HTTP date), or None without one.

    An HTTP date is measured against the response's own ``Date`` when it has one, so the two clocks' difference
    does not matter; otherwise against ``now``.
    """
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        until = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    reference = now
    if response.headers.get("Date"):
        try:
            reference = parsedate_to_datetime(response.headers["Date"])
        except (TypeError, ValueError):
            reference = now
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    return max(0.0, (until - reference).total_seconds())


async def send(context: PluginContext, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """``context.http.request(method, url, **kwargs)``, tried again after a 429 or 503 within the bounds above.

    Raises :class:`RetryLater` when the EHR stays busy; transport errors (including the host's
    :class:`~plugin_sdk.OutboundRefused`) pass through unchanged.
    """
    waited = 0.0
    for attempt in range(1, MAX_TRIES + 1):
        response = await context.http.request(method, url, **kwargs)
        if response.status_code not in RETRY_STATUSES:
            return response
        delay = retry_after_seconds(response, context.now())
        if delay is None:
            delay = DEFAULT_BACKOFF_SECONDS * 2 ** (attempt - 1)
        if attempt == MAX_TRIES or waited + delay > MAX_WAIT_SECONDS:
            raise RetryLater(
                f"{httpx.URL(url).host} answered {response.status_code} {attempt} time(s) "
                f"(Retry-After {response.headers.get('Retry-After', 'none')}); the sync will be retried later",
                response.status_code,
            )
        await asyncio.sleep(delay)
        waited += delay
    raise AssertionError("unreachable")  # pragma: no cover


def error_detail(response: httpx.Response) -> str:
    """A short reason from an error answer: an OperationOutcome's diagnostics, an OAuth error, or the status."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        if body.get("resourceType") == "OperationOutcome":
            issues = [i for i in body.get("issue") or [] if isinstance(i, dict)]
            texts = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or "") for i in issues]
            if any(texts):
                return "; ".join(t for t in texts if t)[:300]
        if "error" in body:
            description = body.get("error_description")
            return f"{body['error']}: {description}"[:300] if description else str(body["error"])[:300]
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()
