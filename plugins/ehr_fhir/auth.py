"""SMART Backend Services: a signed JWT assertion exchanged for an access token, and the tokens' cache.

See https://hl7.org/fhir/smart-app-launch/backend-services.html. The assertion is signed with RS384 or ES384 by a
private key from the tenant's ``private_jwks``; its header names the key (``kid``), its claims are
``iss = sub = client_id``, ``aud = token_url``, ``exp`` at most five minutes ahead and a fresh ``jti``. Tokens are
kept per (tenant, client id, token URL) until shortly before they expire, in a bounded module-level cache.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from plugin_sdk import PluginContext
from plugins.ehr_fhir.config import ALGORITHMS, FhirConfig
from plugins.ehr_fhir.transport import FhirError, error_detail, send

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Under the five minutes the specification allows, so that a token server whose clock is a little behind ours
# still accepts it.
ASSERTION_LIFETIME = timedelta(minutes=4)
CACHE_SIZE = 512
# A token is used until this much before it expires (or a fifth of its lifetime, for a short-lived one).
EARLY_REFRESH = timedelta(seconds=60)
DEFAULT_EXPIRES_IN = 300
_ALG_FOR_KEY = {"RSA": "RS384", "EC": "ES384"}


class TokenError(FhirError):
    """The token endpoint refused the client (a wrong key, client id or scope), or answered something unusable."""


@dataclass(frozen=True)
class CachedToken:
    value: str
    expires_at: datetime  # when to stop using it: already before the server's expiry
    scope: str  # the scope it was asked for


CacheKey = tuple[str, str, str]


class TokenCache:
    """Access tokens by (tenant id, client id, token URL), the least recently used dropped beyond ``size``."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._tokens: OrderedDict[CacheKey, CachedToken] = OrderedDict()
        self._lock = threading.Lock()  # hooks of several tenants may run in threads of one process

    def get(self, key: CacheKey, now: datetime, scope: str) -> CachedToken | None:
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.expires_at <= now or token.scope != scope:
                self._tokens.pop(key, None)
                return None
            self._tokens.move_to_end(key)
            return token

    def put(self, key: CacheKey, token: CachedToken) -> None:
        with self._lock:
            self._tokens[key] = token
            self._tokens.move_to_end(key)
            while len(self._tokens) > self.size:
                self._tokens.popitem(last=False)

    def drop(self, key: CacheKey) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()

    def __len__(self) -> int:
        return len(self._tokens)


TOKENS = TokenCache()


def cache_key(context: PluginContext, config: FhirConfig) -> CacheKey:
    tenant = context.tenant.id if context.tenant else ""
    return (tenant, config.client_id or "", config.token_url or "")


def signing_key(config: FhirConfig) -> tuple[Any, str, str]:
    """The private key to sign with, its algorithm and its ``kid``, from ``private_jwks``."""
    keys = [k for k in config.private_jwks.get("keys") or [] if isinstance(k, dict) and k.get("use", "sig") == "sig"]
    if config.kid:
        keys = [k for k in keys if k.get("kid") == config.kid]
    keys = [k for k in keys if "d" in k]  # the private half
    if not keys:
        wanted = f"with kid {config.kid!r} " if config.kid else ""
        raise TokenError(f"private_jwks has no private signing key {wanted}(RS384 or ES384)")
    key = keys[0]
    alg = config.alg or key.get("alg") or _ALG_FOR_KEY.get(str(key.get("kty")))
    if alg not in ALGORITHMS:
        raise TokenError(f"the signing key's algorithm must be RS384 or ES384, not {alg!r}")
    kid = config.kid or key.get("kid")
    if not kid:
        raise TokenError("the signing key has no kid: set kid in the key or the configuration")
    try:
        jwk = jwt.PyJWK(key, algorithm=alg)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise TokenError(f"the key {kid!r} of private_jwks cannot sign {alg}: {exc}") from None
    return jwk.key, alg, str(kid)


def client_assertion(config: FhirConfig, now: datetime) -> str:
    """A signed JWT that authenticates carehub as ``client_id`` to ``token_url``, for one use. Only the claims
    SMART requires: an ``iat`` a little ahead of a token server's clock would be refused by some."""
    key, alg, kid = signing_key(config)
    claims = {
        "iss": config.client_id,
        "sub": config.client_id,
        "aud": config.token_url,
        "exp": int((now + ASSERTION_LIFETIME).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


async def access_token(context: PluginContext, config: FhirConfig, *, fresh: bool = False) -> tuple[str, bool]:
    """The token to send (the configured one in bearer mode) and whether it came from the cache."""
    if config.auth == "bearer":
        return str(config.bearer_token), False
    key = cache_key(context, config)
    now = context.now()
    cached = None if fresh else TOKENS.get(key, now, config.scope)
    if cached is not None:
        return cached.value, True
    token = await _request_token(context, config, now)
    TOKENS.put(key, token)
    return token.value, False


def forget(context: PluginContext, config: FhirConfig) -> None:
    """Drop the tenant's cached token (the EHR refused it)."""
    TOKENS.drop(cache_key(context, config))


async def _request_token(context: PluginContext, config: FhirConfig, now: datetime) -> CachedToken:
    if not config.token_url or not config.client_id:
        raise TokenError("smart_backend needs token_url and client_id")
    form = {
        "grant_type": "client_credentials",
        "scope": config.scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(config, now),
    }
    response = await send(context, "POST", config.token_url, data=form, headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise TokenError(
            f"the token endpoint {config.token_url} refused client {config.client_id!r} "
            f"(HTTP {response.status_code}, {error_detail(response)}): check the client id, that the public key "
            "of kid is registered there, and the scope",
            response.status_code,
        )
    try:
        body = response.json()
        value = body["access_token"]
        expires_in = int(body.get("expires_in") or DEFAULT_EXPIRES_IN)
    except (ValueError, KeyError, TypeError):
        raise TokenError(f"the token endpoint {config.token_url} answered without an access_token") from None
    if not isinstance(value, str) or not value or expires_in <= 0:
        raise TokenError(f"the token endpoint {config.token_url} answered an unusable access token")
    lifetime = timedelta(seconds=expires_in)
    return CachedToken(value=value, expires_at=now + lifetime - min(EARLY_REFRESH, lifetime / 5), scope=config.scope)
