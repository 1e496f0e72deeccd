"""Bundled channel: SMS through a generic HTTP gateway.

Enabled when ``CAREHUB_CHANNEL_SMS_GATEWAY_URL`` is set; see :mod:`plugins.sms_gateway.config` for every setting.

The gateway protocol, for whoever writes or adapts a gateway:

``POST <CAREHUB_CHANNEL_SMS_GATEWAY_URL>`` with a JSON body::

    {"to": "+15551234567", "from": "Riverside", "text": "Your appointment ...", "reference": "<notification id>"}

and the headers ``Authorization: Bearer <CAREHUB_CHANNEL_SMS_GATEWAY_TOKEN>``, ``Content-Type: application/json``
and ``Idempotency-Key: <notification id>``. ``to`` is always E.164; ``from`` is the operator's
``CAREHUB_CHANNEL_SMS_FROM`` (an alphanumeric sender id or an E.164 number); ``text`` is at most 480 characters
(carehub shortens longer messages, ending them with "..."). carehub sends the same notification again, with the
same ``Idempotency-Key`` and ``reference``, when it did not get an answer it could rely on: a gateway must accept
a repeated key without sending a second SMS, answering as it did the first time.

The answer:

- any 2xx: the gateway took the message. A JSON object body with an ``"id"`` gives carehub the gateway's
  reference for it (kept with the notification); any other body is fine too.
- 429, 5xx (and 408): try again later. carehub retries with backoff.
- any other 4xx: this message cannot be sent (bad number, rejected text, bad token); carehub does not retry.
  A short plain text or JSON body saying why is kept with the failed notification.
- no answer within ``CAREHUB_CHANNEL_SMS_TIMEOUT_SECONDS`` (connecting included), or a broken connection: try
  again later.

Redirects are not followed: the URL must name the endpoint itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from plugin_sdk import Channel, Manifest, hookimpl
from plugins.sms_gateway.channel import MAX_TEXT, SmsChannel
from plugins.sms_gateway.config import GatewaySettings

__all__ = ["MANIFEST", "MAX_TEXT", "GatewaySettings", "SmsChannel", "carehub_notification_channels"]

MANIFEST = Manifest(
    name="sms_gateway",
    version="1.0.0",
    sdk=">=1.0,<2",
    title="SMS (HTTP gateway)",
    description="Notifications by SMS through a generic HTTP gateway.",
    vendor="carehub",
    hooks=("carehub_notification_channels",),
    operator_settings=("sms_gateway_url", "sms_gateway_token", "sms_from", "sms_timeout_seconds"),
    per_tenant=False,
)


@hookimpl
def carehub_notification_channels(config: Mapping[str, str]) -> list[Channel]:
    """One SMS channel when a gateway URL is configured, none otherwise."""
    settings = GatewaySettings.from_config(config)
    return [SmsChannel(settings)] if settings else []
