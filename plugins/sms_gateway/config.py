"""The SMS gateway channel's settings, read from the operator's ``CAREHUB_CHANNEL_SMS_*`` variables.

Every bad value raises ``ValueError`` naming the environment variable, so the operator sees at start which one
to fix rather than a failed delivery hours later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

DEFAULT_TIMEOUT_SECONDS = 10.0
# A phone number in E.164 form: "+", a country code that does not start with 0, at most 15 digits in all.
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# An alphanumeric sender id: at most 11 letters, digits and spaces, with at least one letter (an id of digits
# only would be read as a phone number).
SENDER_ID = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
# The token travels only over TLS, except to a gateway on this machine.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def env_name(key: str) -> str:
    """The environment variable an operator sets for ``key`` (``sms_from`` -> ``CAREHUB_CHANNEL_SMS_FROM``)."""
    return f"CAREHUB_CHANNEL_{key.upper()}"


@dataclass(frozen=True)
class GatewaySettings:
    url: str
    token: str
    sender: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"GatewaySettings(url={self.url!r}, sender={self.sender!r}, timeout_seconds={self.timeout_seconds})"

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> GatewaySettings | None:
        """The settings in ``config``, or None when no gateway URL is set (the channel is off).

        Raises:
            ValueError: a setting is missing or malformed; the message names its environment variable.
        """

        def get(key: str) -> str | None:
            value = (config.get(key) or "").strip()
            return value or None

        url = get("sms_gateway_url")
        if url is None:
            return None
        _check_url(url)
        token = get("sms_gateway_token")
        if token is None:
            raise ValueError(f"{env_name('sms_gateway_token')} is required when {env_name('sms_gateway_url')} is set")
        sender = get("sms_from")
        if sender is None:
            raise ValueError(f"{env_name('sms_from')} is required when {env_name('sms_gateway_url')} is set")
        if not (E164.fullmatch(sender) or SENDER_ID.fullmatch(sender)):
            raise ValueError(
                f"{env_name('sms_from')} must be a phone number in E.164 form (+15551234567) or a sender id of at "
                "most 11 letters, digits and spaces"
            )
        raw_timeout = get("sms_timeout_seconds")
        timeout = DEFAULT_TIMEOUT_SECONDS
        if raw_timeout is not None:
            try:
                timeout = float(raw_timeout)
            except ValueError:
                timeout = 0.0
            if not 0 < timeout < float("inf"):
                raise ValueError(
                    f"{env_name('sms_timeout_seconds')} must be a positive number of seconds, not {raw_timeout!r}"
                )
        return cls(url, token, sender, timeout)


def _check_url(url: str) -> None:
    name = env_name("sms_gateway_url")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{name} is not a URL: {exc}") from exc
    if not parsed.host:
        raise ValueError(f"{name} must be an absolute URL such as https://sms.example.org/send")
    if parsed.scheme == "https":
        return
    if parsed.scheme == "http" and parsed.host in LOCAL_HOSTS:
        return
    raise ValueError(f"{name} must use https (plain http only to a gateway on this machine: 127.0.0.1 or localhost)")
