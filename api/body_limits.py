"""Request bodies are checked before anything decodes them: a NUL character, a JSON document nested too deep
or an array too long is refused with a 400 naming the limit.

A 2 KB body of ``[`` brackets would otherwise exhaust the decoder's recursion (a 500), and a body of a million
tiny items would cost the decoder and every validator after it. The scan is cheap: the common body, with
fewer brackets than the depth limit and fewer commas than the array limit, is passed after two byte counts;
only a body that could break a limit is walked, with its strings taken out first.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request

from core.errors import InvalidInput
from core.settings import Settings

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STRUCTURE = re.compile(rb"[\[\]{},]")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# A route whose body is itself a nested document (a JSON Schema) may name a deeper limit in its ``opt``.
MAX_JSON_DEPTH = "max_json_depth"


class BodyTooComplex(InvalidInput):
    """A body over a structural limit: a 400, as for any body the server cannot read."""

    status = 400
    title = "Invalid request"


def json_limit_broken(body: bytes, max_depth: int, max_items: int) -> str | None:
    """Which limit ``body`` (JSON text) breaks, as a sentence; ``None`` when it keeps both."""
    could_nest = body.count(b"[") + body.count(b"{") > max_depth
    could_be_long = body.count(b",") >= max_items
    if not (could_nest or could_be_long):
        return None
    # Commas and brackets inside strings are text, not structure.
    structure = _STRUCTURE.findall(_STRING.sub(b'""', body))
    counts: list[int] = []  # per open container: items seen so far in an array, -1 for an object
    for token in structure:
        if token in (b"[", b"{"):
            if len(counts) == max_depth:
                return f"the JSON body is nested deeper than {max_depth} levels (limit: {MAX_JSON_DEPTH})"
            counts.append(0 if token == b"[" else -1)
        elif token in (b"]", b"}"):
            if counts:
                counts.pop()
        elif counts and counts[-1] >= 0:
            counts[-1] += 1
            if counts[-1] >= max_items:
                return f"a JSON array in the body has more than {max_items} items (limit: max_json_array_items)"
    return None


def _find_nul(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, item in items:
        child = f"{path}{key}" if str(key).startswith("[") else (f"{path}.{key}" if path else str(key))
        found = _find_nul(item, child)
        if found:
            return found
    return None


async def check_request(request: Request[Any, Any, Any]) -> None:
    """Refuse, before any handler decodes the body, what no handler could take.

    NUL characters are refused everywhere (PostgreSQL cannot store them in text), naming the field; a JSON
    body over the nesting or array limits (``CAREHUB_MAX_JSON_DEPTH``, ``CAREHUB_MAX_JSON_ARRAY_ITEMS``) is a
    400 naming the limit.
    """
    for name, value in request.query_params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise InvalidInput(f"{name} contains a NUL character", field=name, source="query")
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    if request.headers.get("content-type", "").lower().startswith(_FORM_TYPES):
        return
    body = await request.body()
    settings: Settings = request.app.state.hub.settings
    depth = max(settings.max_json_depth, int(request.route_handler.opt.get(MAX_JSON_DEPTH, 0)))
    broken = json_limit_broken(body, depth, settings.max_json_array_items)
    if broken:
        raise BodyTooComplex(broken, field="body")
    if b"\x00" in body or b"\\u0000" in body.lower():
        try:
            parsed = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return
        field = _find_nul(parsed, "") or "body"
        raise InvalidInput(f"{field} contains a NUL character", field=field)
