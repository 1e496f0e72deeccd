"""The vendors' reference, generated from the SDK itself:

    python -m plugin_sdk.reference > docs/plugins/reference.md

It holds every hook of :class:`~plugin_sdk.hookspecs.HookSpecs` under its family (the banner comments of
``hookspecs.py``) with its exact signature, its docstring and the type the host checks its result against; then
the context, every payload and effect with its fields and version, the notification channel types, the manifest's
fields and the test harness. A test compares the committed file with a fresh generation, so it cannot go stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from plugin_sdk import effects, hookspecs, payloads
from plugin_sdk.reference.render import Renderer, anchor
from plugin_sdk.reference.sections import (
    context_section,
    effects_section,
    hooks_section,
    manifest_section,
    notify_section,
    payloads_section,
    testing_section,
)
from plugin_sdk.reference.source import hook_families
from plugin_sdk.version import SDK_VERSION

__all__ = ["generate", "hook_families", "main"]


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
    for section in (
        hooks_section,
        context_section,
        payloads_section,
        effects_section,
        notify_section,
        manifest_section,
        testing_section,
    ):
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
