"""Plugins' sensitive configuration at rest: one Fernet token (AES-128-CBC with an HMAC) per enablement, under
``CAREHUB_PLUGIN_SECRET_KEYS`` (the first key encrypts, every key decrypts, so keys can be rotated).

cryptography's Fernet rather than a cipher of our own: it authenticates what it decrypts, and a wrong key fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.errors import Conflict


def _box(keys: Sequence[str]) -> MultiFernet:
    if not keys:
        raise Conflict(
            "plugin secrets cannot be stored: the operator has not set CAREHUB_PLUGIN_SECRET_KEYS", field="config"
        )
    return MultiFernet([Fernet(key) for key in keys])


def seal(keys: Sequence[str], values: Mapping[str, Any]) -> str | None:
    if not values:
        return None
    return _box(keys).encrypt(json.dumps(dict(values), sort_keys=True).encode()).decode()


def unseal(keys: Sequence[str], token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return dict(json.loads(_box(keys).decrypt(token.encode())))
    except InvalidToken:
        raise Conflict(
            "this plugin's stored secrets cannot be decrypted with CAREHUB_PLUGIN_SECRET_KEYS (was a key removed?); "
            "enter them again",
            field="config",
        ) from None
