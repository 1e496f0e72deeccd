"""Password hashing with argon2id, off the event loop.

argon2 is deliberately slow (tens of milliseconds): the async helpers run it in worker threads, at most
two at a time, so that one tenant's sign-ins cannot stall every other tenant's requests.
"""

from __future__ import annotations

import anyio
import anyio.to_thread
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


_limiter: anyio.CapacityLimiter | None = None


def _threads() -> anyio.CapacityLimiter:
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(2)
    return _limiter


async def hash_password_async(password: str) -> str:
    return await anyio.to_thread.run_sync(hash_password, password, limiter=_threads())


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await anyio.to_thread.run_sync(verify_password, password_hash, password, limiter=_threads())
