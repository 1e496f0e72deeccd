"""The structured section of a care plan, checked against its template's JSON Schema (draft 2020-12)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from core.errors import InvalidInput

MAX_ERRORS = 50


def _path(prefix: str, parts: Iterable[Any]) -> str:
    path = prefix
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _local_refs_only(node: Any, where: str) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
            raise InvalidInput("only local references ($ref starting with #) are allowed", field=f"{where}.$ref")
        for key, value in node.items():
            _local_refs_only(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _local_refs_only(value, f"{where}[{index}]")


def check_schema(schema: dict[str, Any], field: str = "structured_schema") -> None:
    """Refuse a template schema that is not a valid JSON Schema describing an object."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput(f"not a valid JSON Schema: {exc.message}", field=_path(field, exc.absolute_path)) from None
    if schema.get("type") != "object":
        raise InvalidInput('the structured section is an object: the schema needs "type": "object"', field=field)
    _local_refs_only(schema, field)


def _problems(error: ValidationError, prefix: str) -> list[tuple[str, str]]:
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return [(_path(prefix, [*error.absolute_path, name]), "is required") for name in missing]
    return [(_path(prefix, error.absolute_path), error.message)]


def validate(schema: dict[str, Any], value: dict[str, Any] | None, field: str = "structured") -> None:
    """Raise :class:`InvalidInput` naming every failing path of ``value`` (e.g. ``structured.hba1c.target``)."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems: list[tuple[str, str]] = []
    for error in sorted(
        validator.iter_errors(value if value is not None else {}), key=lambda e: [str(p) for p in e.path]
    ):
        for problem in _problems(error, field):
            if problem not in problems:
                problems.append(problem)
        if len(problems) >= MAX_ERRORS:
            break
    if problems:
        listing = "; ".join(f"{path}: {message}" for path, message in problems[:5])
        raise InvalidInput(f"the plan does not match its template ({listing})", field=problems[0][0], problems=problems)
