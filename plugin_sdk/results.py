"""Checking what a hook returned against the type its hookspec declares (the host and the test harness alike)."""

from __future__ import annotations

from typing import Any

import msgspec

from plugin_sdk.hookspecs import RESULT_TYPES


class WrongResult(Exception):
    """A hook returned something that is not what its hookspec declares (the message says what and where)."""


def check_result(hook: str, value: Any) -> Any:
    """``value`` as the hook's declared type, validated all the way down (every nested payload, every time's
    timezone); raises :class:`WrongResult`. A return value the host does not use is passed through."""
    expected = RESULT_TYPES.get(hook)
    if expected is None:
        return value
    try:
        # Through plain data and back: a Struct built by hand is not validated when it is made, and an object of
        # any other class (an ORM row, a dict of the wrong shape) fails here rather than in the host.
        return msgspec.convert(msgspec.to_builtins(value), expected)
    except (msgspec.ValidationError, TypeError) as exc:
        raise WrongResult(f"{hook} returned {type(value).__name__}, not what it declares: {exc}") from exc
