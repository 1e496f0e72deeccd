"""Bundled channel: email through the operator's SMTP server (standard library only).

Enabled when ``CAREHUB_CHANNEL_SMTP_HOST`` is set; see :mod:`plugins.email_smtp.config` for every setting.
"""

from __future__ import annotations

from collections.abc import Mapping

from plugin_sdk import Channel, Manifest, hookimpl
from plugins.email_smtp.channel import EmailChannel
from plugins.email_smtp.config import SmtpSettings

__all__ = ["MANIFEST", "EmailChannel", "SmtpSettings", "carehub_notification_channels"]

MANIFEST = Manifest(
    name="email_smtp",
    version="1.0.0",
    sdk=">=1.0,<2",
    title="Email (SMTP)",
    description="Notifications by email through the operator's SMTP server.",
    vendor="carehub",
    hooks=("carehub_notification_channels",),
    operator_settings=(
        "smtp_host",
        "smtp_port",
        "smtp_security",
        "smtp_username",
        "smtp_password",
        "smtp_from",
        "smtp_timeout_seconds",
    ),
    per_tenant=False,
)


@hookimpl
def carehub_notification_channels(config: Mapping[str, str]) -> list[Channel]:
    """One email channel when an SMTP host is configured, none otherwise."""
    settings = SmtpSettings.from_config(config)
    return [EmailChannel(settings)] if settings else []
