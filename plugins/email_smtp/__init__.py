"""Bundled channel: email through the operator's SMTP server (standard library only).

Enabled when ``CAREHUB_CHANNEL_SMTP_HOST`` is set; see :mod:`plugins.email_smtp.config` for every setting.
"""

from __future__ import annotations

from collections.abc import Mapping

from plugin_sdk import Channel, hookimpl
from plugins.email_smtp.channel import EmailChannel
from plugins.email_smtp.config import SmtpSettings

__all__ = ["EmailChannel", "SmtpSettings", "carehub_notification_channels"]


@hookimpl
def carehub_notification_channels(config: Mapping[str, str]) -> list[Channel]:
    """One email channel when an SMTP host is configured, none otherwise."""
    settings = SmtpSettings.from_config(config)
    return [EmailChannel(settings)] if settings else []
