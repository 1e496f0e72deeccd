"""The example plugin distribution (docs/examples/carehub-example-plugin) is sound, and its own tests pass."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

import plugin_sdk
from plugin_sdk.testing import manifest_of

ROOT = Path(plugin_sdk.__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "carehub-example-plugin"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    return importlib.import_module("carehub_example_directory")


def test_its_manifest_is_sound(example: ModuleType) -> None:
    manifest = manifest_of(example)
    assert manifest.name == "example_directory"
    assert set(manifest.hooks) == {"carehub_directory_search", "carehub_health_check"}
    assert manifest.outbound_config_keys == ("base_url",)
    assert manifest.outbound_hosts == ()
    assert manifest.sensitive_keys == ("api_key",)
    assert manifest.supports()


def test_its_entry_point_names_the_module_under_the_plugins_name(example: ModuleType) -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["carehub"] == {example.MANIFEST.name: example.__name__}
    assert "carehub" in project["project"]["dependencies"]
    assert project["tool"]["pytest"]["ini_options"]["asyncio_mode"] == "auto"


@pytest.mark.slow
def test_its_own_tests_pass() -> None:
    path = os.pathsep.join([str(EXAMPLE / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout
