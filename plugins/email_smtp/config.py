"""The SMTP channel's settings, read from the operator's ``CAREHUB_CHANNEL_SMTP_*`` variables.

Every bad value raises ``ValueError`` naming the environment variable, so the operator sees at start which one
to fix rather than a failed delivery hours later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from typing import Literal

Security = Literal["starttls", "ssl", "none"]
SECURITY_MODES: tuple[Security, ...] = ("starttls", "ssl", "none")
DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "ssl": 465, "none": 587}
DEFAULT_TIMEOUT_SECONDS = 10.0


def env_name(key: str) -> str:
    """The environment variable an operator sets for ``key`` (``smtp_from`` -> ``CAREHUB_CHANNEL_SMTP_FROM``)."""
    return f"CAREHUB_CHANNEL_{key.upper()}"


def parse_address(value: str) -> Address | None:
    """``value`` as a bare address (``someone@example.org``), or None when it is not exactly one address."""
    try:
        address = Address(addr_spec=value)
    except Exception:  # the email parser raises several unrelated types for malformed input
        return None
    return address if address.username and address.domain else None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Security
    sender: str  # the envelope sender and the From address
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # kept out of logs and tracebacks
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> SmtpSettings | None:
        """The settings in ``config``, or None when no SMTP host is set (the channel is off).

        Raises:
            ValueError: a setting is missing or malformed; the message names its environment variable.
        """

        def get(key: str) -> str | None:
            value = (config.get(key) or "").strip()
            return value or None

        host = get("smtp_host")
        if host is None:
            return None
        security = (get("smtp_security") or "starttls").lower()
        if security not in SECURITY_MODES:
            raise ValueError(f"{env_name('smtp_security')} must be one of {', '.join(SECURITY_MODES)}")
        mode: Security = security
        port = _port(get("smtp_port"), DEFAULT_PORTS[mode])
        sender = get("smtp_from")
        if sender is None:
            raise ValueError(f"{env_name('smtp_from')} is required when {env_name('smtp_host')} is set")
        if parse_address(sender) is None:
            raise ValueError(f"{env_name('smtp_from')} must be one plain address such as carehub@example.org")
        username, password = get("smtp_username"), config.get("smtp_password") or None
        if (username is None) != (password is None):
            missing = "smtp_password" if password is None else "smtp_username"
            raise ValueError(f"{env_name(missing)} is required with {env_name(_other(missing))}")
        if username and mode == "none" and not is_loopback(host):
            # The password would cross the network in clear text.
            raise ValueError(
                f"{env_name('smtp_security')}=none sends {env_name('smtp_password')} unencrypted; use starttls or "
                "ssl, or a relay on this machine"
            )
        timeout = _positive_float(get("smtp_timeout_seconds"), "smtp_timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        return cls(host, port, mode, sender, username, password, timeout)


def _other(key: str) -> str:
    return "smtp_username" if key == "smtp_password" else "smtp_password"


def _port(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ValueError(f"{env_name('smtp_port')} must be a port number (1-65535), not {raw!r}")
    return port


def _positive_float(raw: str | None, key: str, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{env_name(key)} must be a positive number of seconds, not {raw!r}")
    return value
