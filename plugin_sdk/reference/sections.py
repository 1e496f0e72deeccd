"""The reference's sections: hooks, context, payloads, effects, channels, manifest, harness."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from plugin_sdk import context as context_module
from plugin_sdk import effects, hookspecs, manifest, notify, outbound, payloads, results, testing
from plugin_sdk.reference.render import Renderer, anchor, hook_signature, type_text, value_text
from plugin_sdk.reference.source import banner_groups, hook_families, source_signature
from plugin_sdk.version import SDK_VERSION


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


def hooks_section(renderer: Renderer) -> Iterator[str]:
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


def context_section(renderer: Renderer) -> Iterator[str]:
    cls = context_module.PluginContext
    yield "## `PluginContext`"
    yield ""
    yield "`from plugin_sdk import PluginContext`: what every per-tenant hook is given as `context`."
    yield renderer.docstring(cls.__doc__)
    yield ""
    yield from renderer.dataclass_fields(cls)
    yield f"- `{source_signature(cls.now)}`: `clock()`, the time now (in the harness, its `FakeClock`)."


def payloads_section(renderer: Renderer) -> Iterator[str]:
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


def effects_section(renderer: Renderer) -> Iterator[str]:
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


def notify_section(renderer: Renderer) -> Iterator[str]:
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


def manifest_section(renderer: Renderer) -> Iterator[str]:
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


def testing_section(renderer: Renderer) -> Iterator[str]:
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
