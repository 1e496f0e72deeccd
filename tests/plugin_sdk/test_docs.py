"""The vendors' documentation stays true (in the manner of datasette's ``test_docs.py``): the committed reference is
what ``python -m plugin_sdk.reference`` generates now, every hook is in it with its exact signature, every payload
and effect with its version and fields, and the code the guide and the tutorial show is code that exists."""

from __future__ import annotations

import dataclasses
import inspect
import re
from functools import cache
from pathlib import Path

import msgspec
import pytest

from plugin_sdk import effects, payloads, reference, scaffold
from plugin_sdk.hookspecs import HOOK_NAMES, HookSpecs
from plugin_sdk.manifest import Manifest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugins"
EXAMPLE = ROOT / "docs" / "examples" / "carehub-example-plugin"
TUTORIAL_PLUGIN = "pressure_watch"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@cache
def text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def code_blocks(markdown: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(markdown) if lang == language]


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of any level."""
    assert heading in markdown, f"{heading!r} is not in the reference"
    return markdown.split(heading + "\n", 1)[1].split("\n#", 1)[0]


# -----------------------------------------------------------------------------------------------------------
# The reference
# -----------------------------------------------------------------------------------------------------------


def test_the_committed_reference_is_what_the_sdk_generates() -> None:
    assert text("reference.md") == reference.generate(), (
        "docs/plugins/reference.md is stale: python -m plugin_sdk.reference > docs/plugins/reference.md"
    )


@pytest.mark.parametrize("hook", sorted(HOOK_NAMES))
def test_every_hook_is_documented_with_its_exact_signature(hook: str) -> None:
    function = getattr(HookSpecs, hook)
    signature = inspect.signature(function)
    parameters = ", ".join(f"{p.name}: {p.annotation}" for p in list(signature.parameters.values())[1:])
    kind = "async def" if inspect.iscoroutinefunction(function) else "def"
    documented = section(text("reference.md"), f"#### `{hook}`")
    assert f"```python\n@hookimpl\n{kind} {hook}({parameters}) -> {signature.return_annotation}\n```" in documented
    # The docstring is there, up to its first Sphinx role (rendered as a link).
    opening = re.split(r":\w+:`", inspect.cleandoc(function.__doc__).splitlines()[0])[0].replace("``", "`")
    assert opening in documented


def test_every_hook_is_in_one_family_as_the_banners_of_hookspecs_say() -> None:
    families = reference.hook_families()
    hooks = [hook for _, members in families for hook in members]
    assert sorted(hooks) == sorted(HOOK_NAMES)
    source = inspect.getsource(HookSpecs)
    banners = re.findall(r"# -{20,}\n\s*# (.+)\n\s*# -{20,}", source)
    assert [family for family, _ in families] == banners
    for family, _ in families:
        assert f"\n### {family}\n" in text("reference.md")


def test_docstrings_are_rendered_for_reading() -> None:
    rendered = text("reference.md")
    for leftover in (".. versionadded::", ":func:`", ":class:`", ":mod:`"):
        assert leftover not in rendered
    added = sum("*Added in SDK " in section(rendered, f"#### `{hook}`") for hook in HOOK_NAMES)
    assert added == len(HOOK_NAMES)
    assert "*Added in SDK 0.1.*" in section(rendered, "#### `carehub_notification_channels`")


@pytest.mark.parametrize("name", sorted(payloads.PAYLOAD_VERSIONS))
def test_every_payload_is_listed_with_its_version_and_fields(name: str) -> None:
    rendered = text("reference.md")
    assert f"| [`{name}`](#{name.lower()}) | {payloads.PAYLOAD_VERSIONS[name]} |" in rendered
    documented = section(rendered, f"#### `{name}`")
    assert documented.lstrip().startswith(f"Version {payloads.PAYLOAD_VERSIONS[name]}.")
    for field in msgspec.structs.fields(getattr(payloads, name)):
        assert f"\n- `{field.name}: " in documented, f"{name}.{field.name} is not in the reference"


@pytest.mark.parametrize(
    "cls", [*effects.EFFECT_TYPES, effects.PullBatch, effects.InboundResult], ids=lambda c: c.__name__
)
def test_every_effect_is_listed_with_its_version_and_fields(cls: type[msgspec.Struct]) -> None:
    documented = section(text("reference.md"), f"### `{cls.__name__}`")
    assert documented.lstrip().startswith(f"Version {cls.VERSION}")  # type: ignore[attr-defined]
    for field in msgspec.structs.fields(cls):
        assert f"\n- `{field.name}: " in documented
    if issubclass(cls, effects.Effect):
        assert f'`kind` is `"{cls.__struct_config__.tag}"`; data category `{cls.CATEGORY}`' in documented


def test_every_manifest_field_is_listed() -> None:
    documented = section(text("reference.md"), "## `Manifest`")
    for field in dataclasses.fields(Manifest):
        assert f"\n- `{field.name}: {field.type}" in documented


def test_the_reference_module_writes_the_file(tmp_path: Path) -> None:
    assert reference.main(["--output", str(tmp_path / "reference.md")]) == 0
    assert (tmp_path / "reference.md").read_text(encoding="utf-8") == text("reference.md")


def test_links_between_the_pages_go_to_a_heading() -> None:
    def anchors(name: str) -> set[str]:
        return {reference.anchor(h) for h in re.findall(r"^#+ (.+)$", text(name), re.MULTILINE)}

    links = []
    for name in ("README.md", "tutorial.md", "reference.md"):
        links += [(name, name, target) for target in re.findall(r"\]\(#([\w-]+)\)", text(name))]
        for page in ("README.md", "reference.md"):
            links += [(name, page, t) for t in re.findall(rf"\]\({re.escape(page)}#([\w-]+)\)", text(name))]
    broken = [f"{name} -> {page}#{target}" for name, page, target in links if target not in anchors(page)]
    assert len(links) > 100
    assert not broken


# -----------------------------------------------------------------------------------------------------------
# The guide and the tutorial show real code
# -----------------------------------------------------------------------------------------------------------


@cache
def real_files() -> dict[str, str]:
    """The files the docs may quote: the tutorial's plugin as the scaffold writes it, and the example plugin."""
    files = {f"scaffold:{path}": body for path, body in scaffold.render(TUTORIAL_PLUGIN).items()}
    for path in sorted(EXAMPLE.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml"):
            files[f"example:{path.relative_to(EXAMPLE)}"] = path.read_text(encoding="utf-8")
    return files


def test_the_tutorial_shows_the_plugin_exactly_as_the_scaffold_writes_it() -> None:
    tutorial = text("tutorial.md")
    generated = scaffold.render(TUTORIAL_PLUGIN)
    assert f"carehub plugin new {TUTORIAL_PLUGIN}\n" in tutorial
    assert f"python -m plugin_sdk.scaffold {TUTORIAL_PLUGIN}" in tutorial
    assert generated[f"src/carehub_{TUTORIAL_PLUGIN}/__init__.py"] in code_blocks(tutorial, "python")
    for path in generated:
        assert path.rsplit("/", 1)[-1] in tutorial, f"the tutorial does not show where {path} is"


@pytest.mark.parametrize("name", ["README.md", "tutorial.md"])
def test_every_python_and_toml_block_is_code_that_exists(name: str) -> None:
    blocks = code_blocks(text(name), "python") + code_blocks(text(name), "toml")
    assert blocks, f"{name} shows no code"
    for block in blocks:
        sources = [path for path, body in real_files().items() if block in body]
        assert sources, f"this block of {name} is neither in the scaffold's output nor in the example:\n{block}"


def test_the_guide_names_every_family_and_links_it() -> None:
    guide = text("README.md")
    for family, hooks in reference.hook_families():
        short = family.split(" (")[0]
        assert f"[{short}](reference.md#{reference.anchor(family)})" in guide
        assert f"`{hooks[0]}`" in guide
