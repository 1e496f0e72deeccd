"""Access tokens: JWTs signed with HS256 under a key id (``kid``) so that keys can rotate."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from core.db import utcnow
from core.errors import Unauthorized
from core.settings import Settings

ALGORITHMS = ["HS256"]
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "nbf", "iat", "jti", "ver"]


@dataclass(frozen=True)
class Claims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    token_version: int
    issued_at: datetime


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def issue(self, user_id: uuid.UUID, tenant_id: uuid.UUID | None, token_version: int) -> tuple[str, datetime]:
        now = utcnow()
        expires = now + timedelta(seconds=self._settings.jwt_ttl_seconds)
        claims = {
            "iss": self._settings.jwt_issuer,
            "aud": self._settings.jwt_audience,
            "sub": str(user_id),
            "tid": str(tenant_id) if tenant_id else None,
            "ver": token_version,
            # A fractional NumericDate: compared with suspension and removal times to the microsecond.
            "iat": now.timestamp(),
            "nbf": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        kid = self._settings.jwt_active_kid
        token = jwt.encode(claims, self._settings.jwt_keys[kid], algorithm="HS256", headers={"kid": kid})
        return token, expires

    def verify(self, token: str) -> Claims:
        """Check signature, algorithm, issuer, audience and times; every registered claim is required.

        Raises:
            Unauthorized: with the reason, for any defect.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from None
        kid = header.get("kid")
        key = self._settings.jwt_keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthorized("token signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_seconds,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        self._check_lifetime(claims)
        try:
            user_id = uuid.UUID(claims["sub"])
            tenant_id = uuid.UUID(claims["tid"]) if claims.get("tid") else None
            version = int(claims["ver"])
            issued_at = datetime.fromtimestamp(float(claims["iat"]), UTC)
        except (ValueError, TypeError, KeyError, OverflowError, OSError):
            raise Unauthorized("invalid token: bad subject, tenant, version or issue time claim") from None
        return Claims(user_id=user_id, tenant_id=tenant_id, token_version=version, issued_at=issued_at)

    def _check_lifetime(self, claims: dict[str, object]) -> None:
        """A token may not live longer than the configured maximum, counted from its issue time and from now.

        The signature proves who signed, not that the signer kept to the hub's lifetime: a token minted by a
        tool or a leaked key with ``exp`` years ahead is refused, and so is one whose ``iat`` was set late to
        hide a long life.
        """
        longest = self._settings.jwt_max_lifetime_seconds + self._settings.jwt_leeway_seconds
        try:
            expires = float(claims["exp"])  # type: ignore[arg-type]
            issued = float(claims["iat"])  # type: ignore[arg-type]
        except (TypeError, ValueError, KeyError):
            raise Unauthorized("invalid token: bad exp or iat claim") from None
        if expires - issued > longest or expires - utcnow().timestamp() > longest:
            raise Unauthorized(
                f"token lifetime exceeds the maximum of {self._settings.jwt_max_lifetime_seconds} seconds"
            )
