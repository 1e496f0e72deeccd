"""Password hashing with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.errors import InvalidInput

MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so that timing does not reveal accounts.
_dummy_hash: str | None = None


def configure(time_cost: int, memory_kib: int) -> None:
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
    _dummy_hash = None


def check_strength(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"{field} must be at least {MIN_PASSWORD_LENGTH} characters", field=field)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    global _dummy_hash
    if password_hash is None:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash("carehub-timing-equaliser")
        password_hash = _dummy_hash
        password = password + "\x00never"
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False
