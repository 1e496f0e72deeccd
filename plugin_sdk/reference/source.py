"""Reading the SDK's source for the reference: banner groups, field notes, exact signatures."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from plugin_sdk import hookspecs

BANNER = re.compile(r"^\s*# -{20,}\s*$")
CLASS_OR_DEF = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)")
ROLE = re.compile(r":(?:func|class|data|mod|meth|attr):`(~?)([\w.]+)`")
VERSION_ADDED = re.compile(r"^\.\. versionadded:: (\S+)\s*$", re.MULTILINE)
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def banner_groups(source: str, names: set[str]) -> list[tuple[str, list[str]]]:
    """The ``# ----`` / ``# Title`` / ``# ----`` banners of ``source``, each with the names in ``names`` that are
    defined (``def``, ``async def`` or ``class``) after it, in source order."""
    lines = source.splitlines()
    groups: list[tuple[str, list[str]]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if BANNER.match(line) and index + 2 < len(lines) and BANNER.match(lines[index + 2]):
            groups.append((lines[index + 1].strip().lstrip("#").strip(), []))
            index += 3
            continue
        found = CLASS_OR_DEF.match(line)
        if found and found.group(1) in names:
            if not groups:
                groups.append(("General", []))
            groups[-1][1].append(found.group(1))
        index += 1
    return [(title, members) for title, members in groups if members]


def hook_families() -> list[tuple[str, list[str]]]:
    """Each family of hooks (its banner in hookspecs.py) with its hooks, in the order they are declared."""
    return banner_groups(inspect.getsource(hookspecs.HookSpecs), set(hookspecs.HOOK_NAMES))


def field_notes(cls: type, fields: Sequence[str]) -> dict[str, str]:
    """The comments on each field of ``cls`` in its source: the comment lines just above a field (shared by the
    fields that follow them without a blank line) and the comment at the end of its line."""
    notes: dict[str, str] = {}
    block: list[str] = []
    after_field = False
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            if after_field:
                block, after_field = [], False
            block.append(stripped.lstrip("#").strip())
            continue
        found = re.match(r"^    (\w+)\s*:", line)
        if found and found.group(1) in fields:
            trailing = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            notes[found.group(1)] = " ".join(part for part in (" ".join(block), trailing) if part)
            after_field = True
            continue
        block, after_field = [], False
    return notes


def _segment(source: str, node: ast.AST) -> str:
    return " ".join((ast.get_source_segment(source, node) or ast.unparse(node)).split())


def _is_plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def source_fields(cls: type) -> dict[str, tuple[str, str | None]]:
    """Each field declared in the class body of ``cls`` and its bases: its annotation and its default, as the
    source writes them (a ``field(default_factory=...)`` as the value it makes, when that is plain data)."""
    found: dict[str, tuple[str, str | None]] = {}
    for base in reversed(cls.__mro__):
        if base.__module__.split(".")[0] != "plugin_sdk":
            continue
        source = textwrap.dedent(inspect.getsource(base))
        node = ast.parse(source).body[0]
        assert isinstance(node, ast.ClassDef)
        for statement in node.body:
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            name, default = statement.target.id, None
            value = statement.value
            if isinstance(value, ast.Call) and any(k.arg == "default_factory" for k in value.keywords):
                factory = next(k.value for k in value.keywords if k.arg == "default_factory")
                made = _factory_value(base, name)
                if _is_plain(made):
                    default = repr(made)
                elif isinstance(factory, ast.Lambda):
                    default = _segment(source, factory.body)
                else:
                    default = f"{_segment(source, factory)}()"
            elif value is not None:
                default = _segment(source, value)
            found[name] = (_segment(source, statement.annotation), default)
    return found


def _factory_value(cls: type, name: str) -> Any:
    if dataclasses.is_dataclass(cls):
        for field in dataclasses.fields(cls):
            if field.name == name and field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
    elif issubclass(cls, msgspec.Struct):
        for info in msgspec.structs.fields(cls):
            if info.name == name and info.default_factory is not msgspec.NODEFAULT:
                return info.default_factory()
    return object()


def source_signature(function: Callable[..., Any], name: str | None = None) -> str:
    """A function's signature as its source writes it, on one line, without ``self`` (a constructor's without its
    ``-> None``)."""
    source = textwrap.dedent(inspect.getsource(function))
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    arguments = node.args

    def one(argument: ast.arg, default: ast.expr | None = None) -> str:
        text = argument.arg + (f": {_segment(source, argument.annotation)}" if argument.annotation else "")
        return text + (f" = {_segment(source, default)}" if default is not None else "")

    positional = arguments.posonlyargs + arguments.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(arguments.defaults))
    defaults += arguments.defaults
    parts = [one(argument, default) for argument, default in zip(positional, defaults, strict=True)]
    if arguments.posonlyargs:
        parts.insert(len(arguments.posonlyargs), "/")
    if arguments.vararg:
        parts.append("*" + one(arguments.vararg))
    elif arguments.kwonlyargs:
        parts.append("*")
    parts += [one(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)]
    if arguments.kwarg:
        parts.append("**" + one(arguments.kwarg))
    if parts and parts[0] in ("self", "cls"):
        parts = parts[1:]
    returns = f" -> {_segment(source, node.returns)}" if node.returns and node.name != "__init__" else ""
    return f"{name or node.name}({', '.join(parts)}){returns}"
