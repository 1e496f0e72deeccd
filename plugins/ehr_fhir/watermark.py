"""The pulls' watermark: where a sync run stands, as an opaque JSON string the host stores between calls.

A run is one search, ``_lastUpdated=gt{since}`` sorted by ``_lastUpdated``, read one page per hook call:

- while pages remain (``more``): ``{"v": 1, "since": <the run's since>, "run": <the run's start>,
  "next": <the next page's URL>}``; the host calls again with it, and a failed batch is repeated with it;
- after the last page: ``{"v": 1, "since": <the run's start minus OVERLAP>}``, the next run's filter.

The run's start is the EHR's own clock when the search was made: the first page Bundle's ``meta.lastUpdated``
(a searchset's is when the search ran), else the response's ``Date`` header, else our clock. A resource changed
during the run (after the search) is therefore newer than the next run's ``since`` and is pulled then, even
though this run's pages did not show it (or showed its older version). The run's start is preferred to the
largest ``meta.lastUpdated`` seen: it needs no state across pages, it exists when a run finds nothing, and it
does not depend on the server honouring ``_sort`` (which FHIR leaves optional).

``OVERLAP`` covers what the clock cannot: a write stamped before the search but committed after it, and a
``Date`` header of one-second resolution. A resource in the overlap is pulled twice; every effect is an upsert
by identifier or external id, so a repeat changes nothing.

Paging assumes the EHR pages a stable result (opaque page tokens over the search's result, as FHIR servers
commonly do): a server that re-ran the query for every page could shift resources between pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from plugins.ehr_fhir.mapping import Unmappable, when

VERSION = 1
OVERLAP = timedelta(seconds=30)


@dataclass(frozen=True)
class Watermark:
    since: datetime | None = None
    run: datetime | None = None  # the run's start, while it has pages left
    next: str | None = None

    def encode(self) -> str:
        body: dict[str, Any] = {"v": VERSION, "since": instant(self.since) if self.since else None}
        if self.next:
            body["run"] = instant(self.run) if self.run else None
            body["next"] = self.next
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | None) -> Watermark:
        """A watermark of ours; a bare FHIR instant (an operator's starting point) is accepted as ``since``."""
        if not raw:
            return cls()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = {"v": VERSION, "since": raw}
        if not isinstance(body, dict) or body.get("v") != VERSION:
            raise ValueError(f"not a watermark of this plugin: {raw[:100]!r}")
        try:
            since, run = when(body.get("since")), when(body.get("run"))
        except Unmappable:
            raise ValueError(f"not a watermark of this plugin: {raw[:100]!r}") from None
        next_url = body.get("next")
        return cls(since=since, run=run, next=str(next_url) if next_url else None)

    def finished(self, run: datetime) -> Watermark:
        """The watermark after a run that began at ``run``: the next run's ``since``."""
        return Watermark(since=run - OVERLAP)


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC with milliseconds: ``2026-01-05T09:00:00.000Z`` (no ``+`` to escape in a URL)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def server_time(bundle: dict[str, Any], response: httpx.Response, fallback: datetime) -> datetime:
    """When the EHR ran the search: the Bundle's ``meta.lastUpdated``, else the ``Date`` header, else
    ``fallback`` (our clock when we asked)."""
    try:
        stamped = when((bundle.get("meta") or {}).get("lastUpdated"))
    except Unmappable:
        stamped = None
    if stamped is not None:
        return stamped
    try:
        return parsedate_to_datetime(response.headers["Date"]).astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        return fallback
