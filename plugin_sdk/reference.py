"""The vendors' reference, generated from the SDK itself:

    python -m plugin_sdk.reference > docs/plugins/reference.md

It holds every hook of :class:`~plugin_sdk.hookspecs.HookSpecs` under its family (the banner comments of
``hookspecs.py``) with its exact signature, its docstring and the type the host checks its result against; then
the context, every payload and effect with its fields and version, the notification channel types, the manifest's
fields and the test harness. A test compares the committed file with a fresh generation, so it cannot go stale.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from plugin_sdk import context as context_module
from plugin_sdk import effects, hookspecs, manifest, notify, outbound, payloads, results, testing
from plugin_sdk.version import SDK_VERSION

BANNER = re.compile(r"^\s*# -{20,}\s*$")
CLASS_OR_DEF = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)")
ROLE = re.compile(r":(?:func|class|data|mod|meth|attr):`(~?)([\w.]+)`")
VERSION_ADDED = re.compile(r"^\.\. versionadded:: (\S+)\s*$", re.MULTILINE)
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


# ---------------------------------------------------------------------------------------------------------------
# Reading the source
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# The sections
# ---------------------------------------------------------------------------------------------------------------


def payload_groups() -> list[tuple[str, list[str]]]:
    """The payloads under the banners of payloads.py."""
    return banner_groups(inspect.getsource(payloads), set(payloads.PAYLOAD_VERSIONS))


def _returns(renderer: Renderer, name: str, returns: str) -> str:
    expected = hookspecs.RESULT_TYPES.get(name)
    if expected is not None:
        return (
            f"Returns `{returns}`{renderer.see_also(returns)}: the host, and the harness, check it as "
            f"`{type_text(expected)}` all the way down, and anything else is a [`WrongResult`](#checking-results)."
        )
    if returns == "None":
        return "Returns nothing: a return value is not used."
    return f"Returns `{returns}`{renderer.see_also(returns)}: the host checks each item (the harness passes it on)."


def _hooks(renderer: Renderer) -> Iterator[str]:
    yield "## Hooks"
    yield ""
    yield renderer.docstring(hookspecs.__doc__)
    yield ""
    yield "| Family | Hooks |"
    yield "| --- | --- |"
    families = hook_families()
    for family, hooks in families:
        yield f"| [{family}](#{anchor(family)}) | {', '.join(renderer.link(h) for h in hooks)} |"
    for family, hooks in families:
        yield ""
        yield f"### {family}"
        for name in hooks:
            function = getattr(hookspecs.HookSpecs, name)
            signature = inspect.signature(function)
            yield ""
            yield f"#### `{name}`"
            yield ""
            yield "```python"
            yield "@hookimpl"
            yield hook_signature(name)
            yield "```"
            yield ""
            yield renderer.docstring(function.__doc__)
            yield ""
            yield "Parameters (accept only those you use):"
            yield ""
            for parameter in list(signature.parameters.values())[1:]:
                annotation = str(parameter.annotation)
                yield f"- `{parameter.name}: {annotation}`{renderer.see_also(annotation)}"
            yield ""
            kind = "`async def`" if inspect.iscoroutinefunction(function) else "`def` (it is called synchronously)"
            yield f"Write it as {kind}. {_returns(renderer, name, str(signature.return_annotation))}"
            if (getattr(function, f"{hookspecs.PROJECT}_spec", None) or {}).get("firstresult"):
                yield "Stops at the first non-None result."


def _context(renderer: Renderer) -> Iterator[str]:
    cls = context_module.PluginContext
    yield "## `PluginContext`"
    yield ""
    yield "`from plugin_sdk import PluginContext`: what every per-tenant hook is given as `context`."
    yield renderer.docstring(cls.__doc__)
    yield ""
    yield from renderer.dataclass_fields(cls)
    yield f"- `{source_signature(cls.now)}`: `clock()`, the time now (in the harness, its `FakeClock`)."


def _payloads(renderer: Renderer) -> Iterator[str]:
    yield "## Payloads"
    yield ""
    yield renderer.docstring(payloads.__doc__)
    yield ""
    yield "`from plugin_sdk.payloads import ...`. Types that fields use:"
    yield ""
    yield "- `AwareDatetime`: a `datetime` with its timezone (`Annotated[datetime, msgspec.Meta(tz=True)]`)."
    yield f"- `SensitiveLabel`: `{type_text(payloads.SensitiveLabel)}`."
    yield f"- `Interpretation`: `{type_text(payloads.Interpretation)}`."
    yield ""
    yield "| Payload | Version |"
    yield "| --- | --- |"
    for name, version in payloads.PAYLOAD_VERSIONS.items():
        yield f"| {renderer.link(name)} | {version} |"
    for group, names in payload_groups():
        yield ""
        yield f"### {group}"
        for name in names:
            cls = getattr(payloads, name)
            yield ""
            yield f"#### `{name}`"
            yield ""
            yield f"Version {payloads.PAYLOAD_VERSIONS[name]}."
            if cls.__doc__ and cls.__doc__ is not payloads.Payload.__doc__:
                yield renderer.docstring(cls.__doc__)
            yield ""
            yield from renderer.struct_fields(cls)


def _effects(renderer: Renderer) -> Iterator[str]:
    yield "## Effects"
    yield ""
    yield renderer.docstring(effects.__doc__)
    yield ""
    union = " | ".join(f"`{cls.__name__}`" for cls in effects.EFFECT_TYPES)
    yield f"`from plugin_sdk import ...`. `AnyEffect` is their union: {union}."
    yield "Each writes one data category, which the plugin's manifest must declare."
    yield ""
    yield "| Effect | `kind` | Data category | Version |"
    yield "| --- | --- | --- | --- |"
    for cls in effects.EFFECT_TYPES:
        tag = cls.__struct_config__.tag
        yield f"| {renderer.link(cls.__name__)} | `{tag}` | `{cls.CATEGORY}` | {cls.VERSION} |"
    for cls in effects.EFFECT_TYPES:
        yield ""
        yield f"### `{cls.__name__}`"
        yield ""
        tag = value_text(cls.__struct_config__.tag)
        yield f"Version {cls.VERSION}; `kind` is `{tag}`; data category `{cls.CATEGORY}`."
        yield renderer.docstring(cls.__doc__)
        yield ""
        yield from renderer.struct_fields(cls)
    for result in (effects.PullBatch, effects.InboundResult):
        yield ""
        yield f"### `{result.__name__}`"
        yield ""
        yield f"Version {result.VERSION}."
        yield renderer.docstring(result.__doc__)
        yield ""
        yield from renderer.struct_fields(result)


def _notify(renderer: Renderer) -> Iterator[str]:
    channel = notify.Channel
    yield "## Notification channels"
    yield ""
    yield (
        f"{renderer.inline(notify.__doc__)} What [`carehub_notification_channels`](#carehub_notification_channels) "
        "returns; `from plugin_sdk import Channel, ChannelError, OutboundMessage, Detail`."
    )
    yield ""
    yield "### `Channel`"
    yield ""
    yield renderer.docstring(channel.__doc__)
    yield ""
    yield from renderer.fields(channel, list(channel.__annotations__))
    yield f"- `async def {source_signature(channel.send)}`: {renderer.inline(channel.send.__doc__)}"
    yield ""
    yield "### `OutboundMessage`"
    yield ""
    yield renderer.docstring(notify.OutboundMessage.__doc__)
    yield ""
    yield from renderer.dataclass_fields(notify.OutboundMessage)
    yield ""
    yield "### `ChannelError`"
    yield ""
    error = notify.ChannelError
    yield f"`{source_signature(error.__init__, 'ChannelError')}`: {renderer.inline(error.__doc__)}"
    yield ""
    yield "### `Detail`"
    yield ""
    levels = ", ".join(f"`{level}`" for level in notify.DETAIL_LEVELS)
    yield f"`{type_text(notify.Detail)}` (`DETAIL_LEVELS`: {levels}, from least to most)."
    yield _comment_before(inspect.getsource(notify), "Detail = ")


def _comment_before(source: str, marker: str) -> str:
    """The comment block just above the line starting with ``marker``, as one paragraph."""
    lines = source.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(marker):
            block: list[str] = []
            for previous in reversed(lines[:index]):
                if not previous.startswith("#"):
                    break
                block.insert(0, previous.lstrip("#").strip())
            return " ".join(block)
    return ""


def _manifest(renderer: Renderer) -> Iterator[str]:
    cls = manifest.Manifest
    yield "## `Manifest`"
    yield ""
    yield renderer.docstring(manifest.__doc__)
    yield ""
    yield "`from plugin_sdk import Manifest`; `MANIFEST = Manifest(...)` with these fields:"
    yield ""
    yield from renderer.dataclass_fields(cls)
    yield ""
    yield "And what the host and the harness use:"
    yield ""
    yield '- `sensitive_keys`: the top-level configuration keys marked `"sensitive": true`.'
    yield (
        f"- `{source_signature(cls.supports)}`: whether that SDK version (this one, `{SDK_VERSION}`, unless given) is "
        "in the manifest's `sdk` range."
    )
    for method in (cls.problems, cls.config_problems):
        yield f"- `{source_signature(method)}`: {renderer.inline(method.__doc__)}"
    yield ""
    categories = ", ".join(f"`{c}`" for c in payloads.DATA_CATEGORIES)
    labels = ", ".join(f"`{c}`" for c in payloads.SENSITIVE_LABELS)
    yield f"The data categories (`plugin_sdk.payloads.DATA_CATEGORIES`): {categories}."
    yield (
        f"Of these, the sensitive labels (`SENSITIVE_LABELS`): {labels}. A record with such a label reaches a "
        "plugin only if its manifest names the label too."
    )
    yield ""
    yield "### `ConfigProblem`"
    yield ""
    yield renderer.docstring(manifest.ConfigProblem.__doc__)
    yield ""
    yield from renderer.dataclass_fields(manifest.ConfigProblem)


def _testing(renderer: Renderer) -> Iterator[str]:
    harness = testing.PluginHarness
    yield "## Test harness"
    yield ""
    yield "`from plugin_sdk.testing import PluginHarness, FakeClock, ConfigRefused`."
    yield ""
    yield renderer.docstring(testing.__doc__)
    yield ""
    yield "### `PluginHarness`"
    yield ""
    yield "```python"
    yield source_signature(harness.__init__, "PluginHarness")
    yield "```"
    yield ""
    yield (
        "It refuses a module without a sound `MANIFEST`, or whose hooks are not the ones its manifest lists "
        "(`TypeError`), and a configuration the manifest's schema refuses ([`ConfigRefused`](#configrefused)). "
        "Use it as `async with PluginHarness(...) as hub:`. Its attributes: `manifest`, `config`, `context`, "
        "`clock`, `policy` (the outbound rules), `effects` (every effect asked for so far) and `results` (each "
        "`(hook, result)`). `TEST_TENANT` is the tenant it calls hooks for unless given another."
    )
    yield ""
    yield f"- `await hub.{source_signature(harness.call)}`: {renderer.inline(harness.call.__doc__)}"
    yield ""
    yield "### `FakeClock`"
    yield ""
    yield (
        f"{renderer.inline(testing.FakeClock.__doc__)} `{source_signature(testing.FakeClock.__init__, 'FakeClock')}` "
        f"starts at `{testing.FakeClock().current.isoformat()}` unless told; `clock()` and `clock.current` are the "
        "time, `clock.advance(minutes=5)` moves it (any `timedelta` keyword) and returns the new time."
    )
    yield ""
    yield "### `ConfigRefused`"
    yield ""
    yield (
        'A `ValueError` whose `problems` are the [`ConfigProblem`](#configproblem)s (each with its `path`; `""` '
        "for the whole configuration), and whose message joins them."
    )
    yield ""
    yield "### Checking results"
    yield ""
    yield f"`plugin_sdk.results.WrongResult`: {renderer.inline(results.WrongResult.__doc__)}"
    yield ""
    yield f"`plugin_sdk.outbound.OutboundRefused`: {renderer.inline(outbound.OutboundRefused.__doc__)}"


def generate() -> str:
    """The whole reference, as Markdown."""
    sections: dict[str, str] = {name: name for name in hookspecs.HOOK_NAMES}
    named = [*payloads.PAYLOAD_VERSIONS, *(cls.__name__ for cls in effects.EFFECT_TYPES)]
    named += ["PullBatch", "InboundResult", "Channel", "OutboundMessage", "ChannelError", "Detail"]
    named += ["PluginContext", "Manifest", "ConfigProblem", "PluginHarness", "FakeClock", "ConfigRefused"]
    sections.update({name: anchor(name) for name in named})
    sections.update(WrongResult="checking-results", OutboundRefused="checking-results")
    renderer = Renderer(sections)
    families = ", ".join(f"[{family}](#{anchor(family)})" for family, _ in hook_families())
    parts: list[str] = [
        "# Plugin SDK reference",
        "",
        f"SDK {SDK_VERSION}. Generated from `plugin_sdk` by `python -m plugin_sdk.reference > "
        "docs/plugins/reference.md`: do not edit it by hand, edit the docstrings and regenerate it. "
        "[The plugin guide](README.md) says what a plugin is; [the tutorial](tutorial.md) builds one.",
        "",
        f"- [Hooks](#hooks): {families}",
        "- [`PluginContext`](#plugincontext)",
        "- [Payloads](#payloads)",
        "- [Effects](#effects)",
        "- [Notification channels](#notification-channels)",
        "- [`Manifest`](#manifest)",
        "- [Test harness](#test-harness)",
        "",
    ]
    for section in (_hooks, _context, _payloads, _effects, _notify, _manifest, _testing):
        parts.extend(section(renderer))
        parts.append("")
    text = "\n".join(parts)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plugin_sdk.reference", description="Write the plugin SDK's reference (Markdown)."
    )
    parser.add_argument("--output", "-o", type=Path, help="write to this file instead of standard output")
    args = parser.parse_args(argv)
    text = generate()
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
