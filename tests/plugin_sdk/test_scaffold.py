"""The scaffold: the plugin distribution it writes for a vendor, whose own tests pass as generated.

The slow test installs the generated distribution into a fresh virtual environment and runs its tests there. The
environment is made in a second or two: ``venv --without-pip``, with a ``.pth`` file that puts this checkout and
this environment's site-packages (carehub's dependencies, pytest, setuptools) after its own. The plugin itself is
installed there for real, by this environment's pip (``pip --python <venv>``, editable, no dependencies), so its
``carehub`` entry point is registered in that environment and nowhere else.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
import time
import tomllib
from datetime import UTC, datetime
from importlib.metadata import entry_points, version
from pathlib import Path
from types import ModuleType

import pytest
from packaging.version import Version

import plugin_sdk
from plugin_sdk import scaffold
from plugin_sdk.payloads import Coding, DeviceReading, DeviceReadingBatch, Identifier, PatientRef
from plugin_sdk.testing import PluginHarness, manifest_of

ROOT = Path(plugin_sdk.__file__).resolve().parent.parent


def load(root: Path, name: str) -> ModuleType:
    """The generated plugin module, imported from its file (not installed)."""
    path = root / "src" / f"carehub_{name}" / "__init__.py"
    spec = importlib.util.spec_from_file_location(f"scaffolded_carehub_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_create_writes_a_distribution(tmp_path: Path) -> None:
    root = scaffold.create("acme", tmp_path)
    assert root == tmp_path / "acme"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "src/carehub_acme/__init__.py", "tests/test_plugin.py"]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "carehub-acme"
    assert project["project"]["dependencies"] == ["carehub"]
    assert project["project"]["entry-points"]["carehub"] == {"acme": "carehub_acme"}
    assert {r.split(">")[0] for r in project["project"]["optional-dependencies"]["dev"]} == {"pytest", "pytest-asyncio"}
    assert project["tool"]["pytest"]["ini_options"]["asyncio_mode"] == "auto"
    assert "acme" in (root / "README.md").read_text()


async def test_the_generated_plugin_is_sound_and_its_hook_works(tmp_path: Path) -> None:
    plugin = load(scaffold.create("acme_devices", tmp_path), "acme_devices")
    manifest = manifest_of(plugin)
    assert (manifest.name, manifest.sdk, manifest.hooks) == (
        "acme_devices",
        ">=1.0,<2",
        ("carehub_device_observations",),
    )
    assert manifest.supports()
    assert manifest.sensitive_keys == ("api_key",)
    ordinary = set(manifest.config_schema["properties"]) - set(manifest.sensitive_keys)
    assert ordinary == {"high_systolic"}
    assert set(manifest.data_categories) == {"clinical_results", "tasks_appointments"}

    patient = PatientRef(identifiers=(Identifier(system="urn:test", value="1"),))
    reading = DeviceReading(
        device_id="cuff",
        code=Coding(system="http://loinc.org", code="8480-6"),
        value="200",
        measured_at=datetime(2026, 1, 5, 7, 0, tzinfo=UTC),
    )
    async with PluginHarness(plugin, config={"api_key": "key-12345"}) as hub:
        effects = await hub.call(
            "carehub_device_observations", batch=DeviceReadingBatch(patient=patient, readings=(reading,))
        )
    assert [type(e).__name__ for e in effects] == ["AddObservation", "CreateTask"]  # 200 >= the default 180
    assert {e.CATEGORY for e in effects} <= set(manifest.data_categories)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "needs a name"),
        ("a", "has 1 characters: a name has 2 to 40"),
        ("a" * 41, "has 41 characters"),
        ("Acme", "must start with a lower-case letter"),
        ("1acme", "must start with a lower-case letter"),
        ("acme-rides", "only lower-case letters, digits and _"),
        ("acme rides", "only lower-case letters, digits and _"),
        ("ácme", "only lower-case letters, digits and _"),
        ("acme_", "must not end with _"),
    ],
)
def test_a_bad_name_is_refused(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scaffold.create(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists already"):
        scaffold.create("acme", tmp_path)
    assert [p.name for p in (tmp_path / "acme").iterdir()] == ["mine.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        scaffold.create("acme", tmp_path / "file")


def test_the_target_directory_is_made_if_need_be(tmp_path: Path) -> None:
    assert scaffold.create("acme", tmp_path / "new" / "place") == tmp_path / "new" / "place" / "acme"


def test_the_longest_name_still_makes_lines_of_at_most_120(tmp_path: Path) -> None:
    name = "a" + "b" * 38 + "c"
    for path, body in scaffold.render(name).items():
        long = [line for line in body.splitlines() if len(line) > 120 and not path.endswith(".md")]
        assert not long, f"{path}: {long}"
        if path.endswith(".py"):
            compile(body, path, "exec")


def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert scaffold.main(["acme", "--directory", str(tmp_path)]) == 0
    assert "carehub-acme" in capsys.readouterr().out
    assert scaffold.main(["acme", "--directory", str(tmp_path)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert scaffold.main(["Acme", "-d", str(tmp_path)]) == 2
    assert "lower-case" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_the_generated_code_is_lint_clean_with_its_own_settings(tmp_path: Path) -> None:
    root = scaffold.create("acme", tmp_path)
    for command in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        done = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=root, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


# -----------------------------------------------------------------------------------------------------------
# Installed in a fresh environment
# -----------------------------------------------------------------------------------------------------------


def _can_build_editable_here() -> bool:
    """Whether this environment's setuptools can build an editable wheel by itself (70.1 and later carry
    bdist_wheel; before, the ``wheel`` package is needed)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    return Version(version("setuptools")) >= Version("70.1") or importlib.util.find_spec("wheel") is not None


def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, **options)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_the_generated_plugin_installs_in_a_fresh_environment_and_its_tests_pass(tmp_path: Path) -> None:
    started = time.monotonic()
    root = scaffold.create("acme", tmp_path)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site_packages = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    # This checkout first (its plugin_sdk), then this environment's packages, .pth files included (carehub's).
    lines = [str(ROOT), *(f"import site; site.addsitedir({path!r})" for path in ours)]
    (site_packages / "carehub-test-parent.pth").write_text("\n".join(lines) + "\n")

    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", "-e", str(root)]
    if _can_build_editable_here():
        install.insert(-2, "--no-build-isolation")
    run(install)

    # The entry point is registered in the fresh environment, and names the generated module.
    probe = (
        "from importlib.metadata import entry_points\n"
        "(point,) = [p for p in entry_points(group='carehub') if p.name == 'acme']\n"
        "module = point.load()\n"
        "print(point.value, point.dist.name, module.MANIFEST.name, module.__file__)\n"
    )
    value, dist, name, where = run([str(python), "-c", probe], cwd=tmp_path).stdout.split()
    assert (value, dist, name) == ("carehub_acme", "carehub-acme", "acme")
    assert Path(where) == root / "src" / "carehub_acme" / "__init__.py"
    # ... and only there: this environment does not have it.
    assert "acme" not in {p.name for p in entry_points(group="carehub")}

    tests = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root)
    assert "4 passed" in tests.stdout
    assert time.monotonic() - started < 40
