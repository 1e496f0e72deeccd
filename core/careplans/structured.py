"""The structured section of a care plan, checked against its template's JSON Schema (draft 2020-12).

Template schemas are written by tenant staff and run on every plan change, so they are held to a safe
subset: no regular expressions (``pattern``, ``patternProperties``: a backtracking pattern can stall the
server), references only to the schema's own ``$defs`` (no remote, dynamic or recursive references), and a
bounded nesting depth.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing.exceptions import Unresolvable

from core.errors import InvalidInput

MAX_ERRORS = 50
MAX_DEPTH = 32
FORBIDDEN_KEYWORDS = {
    "pattern": "regular expressions are not allowed in templates (use enum, format or length limits)",
    "patternProperties": "regular expressions are not allowed in templates (list the properties)",
    "$dynamicRef": "dynamic references are not allowed in templates",
    "$dynamicAnchor": "dynamic references are not allowed in templates",
    "$recursiveRef": "recursive references are not allowed in templates",
    "$recursiveAnchor": "recursive references are not allowed in templates",
    "$id": "templates cannot name other schemas",
    "$anchor": "refer to $defs by path (#/$defs/name) instead of anchors",
}
DEFS_REF = "#/$defs/"


def _path(prefix: str, parts: Iterable[Any]) -> str:
    path = prefix
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


# Keywords whose value maps names to subschemas: the names are data, not keywords.
NAME_MAPS = ("properties", "$defs", "dependentSchemas")


def _check_node(node: Any, where: str, depth: int, defs: dict[str, Any], in_defs: bool, names: bool = False) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"the schema nests deeper than {MAX_DEPTH} levels", field=where)
    if isinstance(node, dict) and names:
        for key, value in node.items():
            _check_node(value, f"{where}.{key}", depth + 1, defs, in_defs)
    elif isinstance(node, dict):
        for keyword, reason in FORBIDDEN_KEYWORDS.items():
            if keyword in node:
                raise InvalidInput(reason, field=f"{where}.{keyword}")
        ref = node.get("$ref")
        if ref is not None:
            name = ref[len(DEFS_REF) :] if isinstance(ref, str) and ref.startswith(DEFS_REF) else None
            if name is None or "/" in name or name not in defs:
                raise InvalidInput(
                    "a $ref must name an entry of this schema's $defs (#/$defs/name)", field=f"{where}.$ref"
                )
            if in_defs:
                raise InvalidInput("an entry of $defs cannot refer to another one (no cycles)", field=f"{where}.$ref")
        for key, value in node.items():
            _check_node(value, f"{where}.{key}", depth + 1, defs, in_defs or key == "$defs", key in NAME_MAPS)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_node(value, f"{where}[{index}]", depth + 1, defs, in_defs)


def check_schema(schema: dict[str, Any], field: str = "structured_schema") -> None:
    """Refuse a template schema that is not a valid JSON Schema describing an object, or leaves the safe subset."""
    defs = schema.get("$defs") if isinstance(schema.get("$defs"), dict) else {}
    assert isinstance(defs, dict)
    _check_node(schema, field, 0, defs, False)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput(f"not a valid JSON Schema: {exc.message}", field=_path(field, exc.absolute_path)) from None
    if schema.get("type") != "object":
        raise InvalidInput('the structured section is an object: the schema needs "type": "object"', field=field)


def validate(schema: dict[str, Any], value: dict[str, Any] | None, field: str = "structured") -> None:
    """Raise :class:`InvalidInput` naming every failing path of ``value`` (e.g. ``structured.hba1c.target``)."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems: list[tuple[str, str]] = []
    try:
        errors = sorted(
            validator.iter_errors(value if value is not None else {}), key=lambda e: [str(p) for p in e.path]
        )
    except (Unresolvable, RecursionError):
        # Only a template stored before the safe subset was enforced can get here.
        raise InvalidInput(
            "the plan's template cannot be applied: retire it and use another", field="template_id"
        ) from None
    for error in errors:
        for problem in _problems(error, field):
            if problem not in problems:
                problems.append(problem)
        if len(problems) >= MAX_ERRORS:
            break
    if problems:
        listing = "; ".join(f"{path}: {message}" for path, message in problems[:5])
        raise InvalidInput(f"the plan does not match its template ({listing})", field=problems[0][0], problems=problems)


def _problems(error: ValidationError, prefix: str) -> list[tuple[str, str]]:
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return [(_path(prefix, [*error.absolute_path, name]), "is required") for name in missing]
    return [(_path(prefix, error.absolute_path), error.message)]
