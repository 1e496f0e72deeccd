"""Rendering the reference's Markdown: anchors, type and value text, and the Renderer."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import textwrap
import types
import typing
from collections.abc import Sequence
from typing import Any

import msgspec

from plugin_sdk import effects, hookspecs, payloads
from plugin_sdk.reference.source import IDENTIFIER, ROLE, VERSION_ADDED, field_notes, source_fields


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def hook_signature(name: str) -> str:
    """The hook as a plugin writes it (a module function: no ``self``), on one line."""
    function = getattr(hookspecs.HookSpecs, name)
    signature = inspect.signature(function)
    parameters = []
    for parameter in list(signature.parameters.values())[1:]:
        text = parameter.name
        if parameter.annotation is not inspect.Parameter.empty:
            text += f": {parameter.annotation}"
        if parameter.default is not inspect.Parameter.empty:
            text += f" = {parameter.default!r}"
        parameters.append(text)
    prefix = "async def" if inspect.iscoroutinefunction(function) else "def"
    return f"{prefix} {name}({', '.join(parameters)}) -> {signature.return_annotation}"


def type_text(tp: Any) -> str:
    """A resolved type as it reads in the source (``list[ServiceRecord]``, ``AwareDatetime | None``)."""
    if tp is None or tp is type(None):
        return "None"
    if tp == effects.AnyEffect:
        return "AnyEffect"
    if tp == payloads.AwareDatetime:
        return "AwareDatetime"
    origin, arguments = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return " | ".join(type_text(argument) for argument in arguments)
    if origin is typing.Literal:
        return "Literal[" + ", ".join(json.dumps(argument) for argument in arguments) + "]"
    if origin is typing.Annotated:
        return type_text(arguments[0])
    if origin is not None:
        shown = ", ".join("..." if argument is Ellipsis else type_text(argument) for argument in arguments)
        return f"{getattr(origin, '__name__', str(origin))}[{shown}]"
    return getattr(tp, "__name__", repr(tp))


def value_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _literal_blocks(text: str) -> str:
    """reStructuredText literal blocks (a paragraph ending in ``::``, then an indented block) as fenced code."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.rstrip().endswith("::"):
            out.append(line)
            index += 1
            continue
        lead = line.rstrip()[:-2].rstrip()
        if lead:
            out.append(lead + ":")
        index += 1
        block: list[str] = []
        while index < len(lines) and (not lines[index].strip() or lines[index].startswith(" ")):
            block.append(lines[index])
            index += 1
        while block and not block[-1].strip():
            block.pop()
        out += ["", "```python", *textwrap.dedent("\n".join(block)).strip("\n").splitlines(), "```", ""]
    return "\n".join(out)


class Renderer:
    """Knows every name that has a section, to link to it from docstrings and types."""

    def __init__(self, sections: dict[str, str]) -> None:
        self.sections = sections  # name -> anchor

    def link(self, name: str) -> str:
        return f"[`{name}`](#{self.sections[name]})" if name in self.sections else f"`{name}`"

    def docstring(self, text: str | None) -> str:
        """A docstring as Markdown: Sphinx roles as links, double backticks as code, versionadded in words."""
        text = inspect.cleandoc(text or "")
        text = ROLE.sub(lambda m: self.link(m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)), text)
        text = re.sub(r"``(.+?)``", r"`\1`", text, flags=re.DOTALL)
        return _literal_blocks(VERSION_ADDED.sub(lambda m: f"*Added in SDK {m.group(1)}.*", text))

    def inline(self, text: str | None) -> str:
        """A short docstring or comment on one line (for a list item)."""
        return " ".join(self.docstring(text).split())

    def see_also(self, annotation: str) -> str:
        """Links to the sections of the names in a type annotation (`` (see X, Y)``), or nothing."""
        linked = [name for name in dict.fromkeys(IDENTIFIER.findall(annotation)) if name in self.sections]
        return f" (see {', '.join(self.link(name) for name in linked)})" if linked else ""

    def fields(self, cls: type, names: Sequence[str]) -> list[str]:
        """One list item per field: its declaration as the source writes it, its comment, links to its types."""
        declared = source_fields(cls)
        notes = field_notes(cls, names)
        lines = []
        for name in names:
            annotation, default = declared[name]
            text = f"{name}: {annotation}" + (f" = {default}" if default is not None else "")
            note = f": {self.inline(notes[name])}" if notes.get(name) else ""
            lines.append(f"- `{text}`{note}{self.see_also(annotation)}")
        return lines

    def struct_fields(self, cls: type[msgspec.Struct]) -> list[str]:
        return self.fields(cls, [field.name for field in msgspec.structs.fields(cls)])

    def dataclass_fields(self, cls: type) -> list[str]:
        return self.fields(cls, [field.name for field in dataclasses.fields(cls)])
