"""The SMS channel: one POST to the gateway per message (the protocol is in the package docstring)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from plugin_sdk import Channel, ChannelError, OutboundMessage
from plugins.sms_gateway.config import E164, GatewaySettings

# Three 160-character segments. Longer texts are cut and end with three dots: "…" is not in the GSM 7-bit
# alphabet, and one such character makes the whole message UCS-2, with well under half the room per segment.
MAX_TEXT = 480
ELLIPSIS = "..."
# How much of a refusing gateway's answer is kept with the failed notification.
MAX_REASON = 200


class SmsChannel(Channel):
    name = "sms"
    address_kind = "phone"
    max_detail = "logistics"

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.timeout_seconds = settings.timeout_seconds

    async def send(self, message: OutboundMessage) -> str | None:
        """POST ``message`` to the gateway; return the gateway's id for it, if its answer has one."""
        if not E164.fullmatch(message.to):
            raise ChannelError("not a phone number in E.164 form (+15551234567)", permanent=True)
        body = {"to": message.to, "from": self.settings.sender, "text": shorten(message.text), "reference": message.id}
        headers = {"Authorization": f"Bearer {self.settings.token}", "Idempotency-Key": message.id}
        # A client per message: a channel outlives event loops (each worker job may run its own), and a client's
        # connections belong to the loop that opened them.
        try:
            async with asyncio.timeout(self.timeout_seconds):  # the whole exchange, not only each read
                async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_seconds)) as client:
                    response = await client.post(self.settings.url, json=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ChannelError(f"SMS gateway did not answer within {self.timeout_seconds:g} s") from exc
        except httpx.HTTPError as exc:
            raise ChannelError(f"SMS gateway unreachable: {type(exc).__name__}: {exc}") from exc
        return _outcome(response)


def shorten(text: str) -> str:
    """``text`` cut to :data:`MAX_TEXT` characters, ending with an ellipsis when it was longer."""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - len(ELLIPSIS)].rstrip() + ELLIPSIS


def _outcome(response: httpx.Response) -> str | None:
    status = response.status_code
    if response.is_success:
        return _reference(response)
    reason = f"SMS gateway answered {status}: {_reason(response)}".rstrip(": ")
    if status in (408, 429) or status >= 500:
        raise ChannelError(reason, permanent=False)
    # Any other 4xx refuses this message; a 1xx or 3xx means the URL does not name the gateway's endpoint.
    raise ChannelError(reason, permanent=True)


def _reference(response: httpx.Response) -> str | None:
    try:
        payload: Any = response.json()
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
        return None
    reference = payload.get("id") if isinstance(payload, dict) else None
    if isinstance(reference, bool) or not isinstance(reference, str | int):
        return None
    return str(reference) or None


def _reason(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."
