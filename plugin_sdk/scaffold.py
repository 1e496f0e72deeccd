"""A new plugin distribution for a vendor, ready to test: ``python -m plugin_sdk.scaffold NAME [--directory DIR]``.

:func:`create` writes ``NAME/`` with a ``pyproject.toml`` (the distribution ``carehub-NAME``, with the ``carehub``
entry point that makes carehub find it), ``src/carehub_NAME/__init__.py`` (a manifest and one working hook:
home blood pressure readings as device observations, and a task for the care team when one is high),
``tests/test_plugin.py`` (tests with :class:`~plugin_sdk.testing.PluginHarness` that pass as generated) and a
README. Replace the hook with yours; the tests show how to test it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from string import Template

from plugin_sdk.manifest import NAME

PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "${project}"
version = "0.1.0"
description = "${title}: a carehub plugin"
readme = "README.md"
requires-python = ">=3.11"
# carehub ships plugin_sdk; the manifest's sdk range says which SDK versions the plugin works with.
dependencies = ["carehub"]

[project.optional-dependencies]
dev = ["pytest>=8", "pytest-asyncio>=0.23"]

# carehub loads every module named in this group (the name is the plugin's, as in its manifest).
[project.entry-points.carehub]
${name} = "${package}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"

[tool.ruff]
line-length = 120
target-version = "py311"
src = ["src"]

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "ASYNC", "S", "RUF"]
ignore = ["S101"]
""")

PLUGIN = Template('''\
"""${title}: a carehub plugin.

Home blood pressure readings become device observations, and a high one a task for the care team. carehub
calls ``carehub_device_observations`` in a worker for each batch of readings a device feed delivers for a tenant
that enabled this plugin, and applies the effects it returns in the tenant's transaction.
"""

from __future__ import annotations

from plugin_sdk import AddObservation, AnyEffect, CreateTask, Manifest, PluginContext, hookimpl
from plugin_sdk.payloads import DeviceReading, DeviceReadingBatch, ObservationRecord

MANIFEST = Manifest(
    name="${name}",
    version="0.1.0",
    sdk=">=1.0,<2",
    title="${title}",
    description="Home blood pressure readings as observations; a task for the care team when one is high.",
    vendor="Your company",
    hooks=("carehub_device_observations",),
    # Each tenant's configuration, checked against this schema when a tenant admin enables the plugin.
    config_schema={
        "type": "object",
        "properties": {
            "high_systolic": {
                "type": "integer",
                "minimum": 120,
                "maximum": 250,
                "description": "A systolic pressure (mm[Hg]) at or above this asks the care team to call.",
            },
            # A secret: stored encrypted, never shown again by carehub's API. Send it to your own service
            # through context.http (which calls only the hosts the manifest names).
            "api_key": {
                "type": "string",
                "minLength": 8,
                "sensitive": True,
                "description": "The tenant's key for your service.",
            },
        },
        "required": ["api_key"],
        "additionalProperties": False,
    },
    # What the effects write: AddObservation is clinical_results, CreateTask tasks_appointments.
    data_categories=("clinical_results", "tasks_appointments"),
)

SYSTOLIC = "8480-6"  # LOINC: systolic blood pressure
DEFAULT_HIGH_SYSTOLIC = 180


def is_high(reading: DeviceReading, threshold: int) -> bool:
    if reading.code.code != SYSTOLIC:
        return False
    try:
        return float(reading.value) >= threshold
    except ValueError:
        return False


@hookimpl
async def carehub_device_observations(context: PluginContext, batch: DeviceReadingBatch) -> list[AnyEffect]:
    """Each reading as a device observation; a high systolic pressure also creates an urgent task."""
    threshold = int(context.config.get("high_systolic", DEFAULT_HIGH_SYSTOLIC))
    effects: list[AnyEffect] = []
    for reading in batch.readings:
        # The same reading sent twice has the same external_id and dedupe_key: the host applies it once.
        reading_id = f"{reading.device_id}/{reading.code.code}/{reading.measured_at.isoformat()}"
        high = is_high(reading, threshold)
        observation = ObservationRecord(
            external_id=reading_id,
            patient=batch.patient,
            code=reading.code,
            value=reading.value,
            unit=reading.unit,
            interpretation="high" if high else "normal",
            category="device",
            effective_at=reading.measured_at,
        )
        effects.append(AddObservation(observation=observation))
        if high:
            task = CreateTask(
                patient=batch.patient,
                title="Call the patient about a high blood pressure reading",
                description=f"Systolic {reading.value} {reading.unit or 'mm[Hg]'}, measured {reading.measured_at}",
                priority="urgent",
                dedupe_key=f"{context.plugin}/{reading_id}",
            )
            effects.append(task)
    return effects
''')

TESTS = Template('''\
"""The plugin's hooks, run the way carehub runs them (no database, no running carehub needed): ``pytest``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from plugin_sdk import AddObservation, CreateTask
from plugin_sdk.payloads import Coding, DeviceReading, DeviceReadingBatch, Identifier, PatientRef
from plugin_sdk.testing import ConfigRefused, PluginHarness

import ${package}

CONFIG = {"api_key": "test-key-0001", "high_systolic": 160}
PATIENT = PatientRef(identifiers=(Identifier(system="urn:example:mrn", value="MRN-1001"),))
LOINC = "http://loinc.org"


def blood_pressure(systolic: str, diastolic: str) -> DeviceReadingBatch:
    measured_at = datetime(2026, 1, 5, 7, 30, tzinfo=UTC)
    return DeviceReadingBatch(
        patient=PATIENT,
        readings=(
            DeviceReading(
                device_id="cuff-7",
                code=Coding(system=LOINC, code="8480-6", display="Systolic blood pressure"),
                value=systolic,
                unit="mm[Hg]",
                measured_at=measured_at,
            ),
            DeviceReading(
                device_id="cuff-7",
                code=Coding(system=LOINC, code="8462-4", display="Diastolic blood pressure"),
                value=diastolic,
                unit="mm[Hg]",
                measured_at=measured_at,
            ),
        ),
    )


async def test_readings_become_device_observations() -> None:
    async with PluginHarness(${package}, config=CONFIG) as hub:
        effects = await hub.call("carehub_device_observations", batch=blood_pressure("128", "82"))
    assert [type(effect) for effect in effects] == [AddObservation, AddObservation]
    assert [effect.observation.value for effect in effects] == ["128", "82"]
    assert {effect.observation.category for effect in effects} == {"device"}


async def test_a_high_reading_asks_the_care_team_to_call() -> None:
    async with PluginHarness(${package}, config=CONFIG) as hub:
        effects = await hub.call("carehub_device_observations", batch=blood_pressure("172", "95"))
    tasks = [effect for effect in effects if isinstance(effect, CreateTask)]
    assert len(tasks) == 1
    assert tasks[0].priority == "urgent"
    assert effects[0].observation.interpretation == "high"
    # carehub applies an effect only when the manifest declares its data category.
    declared = set(${package}.MANIFEST.data_categories)
    assert {effect.CATEGORY for effect in hub.effects} <= declared


def test_a_configuration_without_the_api_key_is_refused() -> None:
    with pytest.raises(ConfigRefused) as refused:
        PluginHarness(${package}, config={"high_systolic": 160})
    assert [problem.path for problem in refused.value.problems] == ["api_key"]


def test_a_threshold_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigRefused) as refused:
        PluginHarness(${package}, config={**CONFIG, "high_systolic": 90})
    assert [problem.path for problem in refused.value.problems] == ["high_systolic"]
''')

README = Template("""\
# ${project}

${title}, a carehub plugin: home blood pressure readings become device observations in the patient's record,
and a systolic pressure at or above the tenant's `high_systolic` (180 unless set) creates an urgent task for
the care team.

## Develop

Install it with its test tools into the environment where carehub is installed (carehub ships `plugin_sdk`),
then run its tests:

```sh
pip install -e '.[dev]'
pytest
```

`src/${package}/__init__.py` holds the manifest (`MANIFEST`) and the hook. `tests/test_plugin.py` runs it
through `plugin_sdk.testing.PluginHarness`, which checks the manifest, the configuration and what the hook
returns as carehub does.

## Install into carehub

Installed in carehub's environment (`pip install -e .` while you work on it, `pip install ${project}` once it
is published), it appears in `carehub plugins list` after carehub restarts: the `carehub` entry point in
`pyproject.toml` is how carehub finds it.

## Configuration (per tenant)

A tenant admin enables it with `PUT /api/v1/plugins/${name}`:

```json
{"enabled": true, "config": {"api_key": "the tenant's key", "high_systolic": 170}}
```

| Key | | |
| --- | --- | --- |
| `api_key` | required, secret | stored encrypted, never returned by the API |
| `high_systolic` | optional, 120-250 | the systolic pressure (mm[Hg]) that asks the care team to call |
""")

FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "src/${package}/__init__.py": PLUGIN,
    "tests/test_plugin.py": TESTS,
}


def check_name(name: str) -> None:
    """Raise ``ValueError`` saying what is wrong with ``name`` as a plugin's name."""
    if not isinstance(name, str) or not name:
        raise ValueError("a plugin needs a name, such as 'acme_rides'")
    if not 2 <= len(name) <= 40:
        raise ValueError(f"plugin name {name!r} has {len(name)} characters: a name has 2 to 40")
    if not NAME.match(name):
        raise ValueError(
            f"plugin name {name!r} must start with a lower-case letter and hold only lower-case letters, digits "
            "and _ (it is the manifest's name, the entry point's, and the package's: carehub_<name>)"
        )
    if name.endswith("_"):
        raise ValueError(f"plugin name {name!r} must not end with _ (the distribution's name cannot)")


def render(name: str) -> dict[str, str]:
    """The files of the plugin ``name``, by their path in its directory."""
    check_name(name)
    values = {
        "name": name,
        "package": f"carehub_{name}",
        "project": f"carehub-{name.replace('_', '-')}",
        "title": name.replace("_", " ").title(),
    }
    return {Template(path).substitute(values): template.substitute(values) for path, template in FILES.items()}


def create(name: str, target: Path) -> Path:
    """Write the distribution of a new plugin ``name`` into ``target/name`` (``target`` is created if need be);
    return that directory. Raises ``ValueError`` for a bad name or a directory that exists already."""
    files = render(name)
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is not a directory")
    root = target / name
    if root.exists():
        raise ValueError(f"{root} exists already: choose another name or directory")
    target.mkdir(parents=True, exist_ok=True)
    root.mkdir()
    for path, text in files.items():
        destination = root / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text, encoding="utf-8")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plugin_sdk.scaffold",
        description="Create a new carehub plugin: a distribution with a manifest, one working hook and its tests.",
    )
    parser.add_argument("name", help="the plugin's name: 2-40 lower-case letters, digits or _ (e.g. acme_rides)")
    parser.add_argument(
        "--directory", "-d", type=Path, default=Path("."), help="where to create it (default: the current one)"
    )
    args = parser.parse_args(argv)
    try:
        root = create(args.name, args.directory)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created {root}/ (the distribution carehub-{args.name.replace('_', '-')}). Next:")
    print(f"  cd {root}")
    print("  pip install -e '.[dev]'   # into carehub's environment")
    print("  pytest")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
