"""The layers, read from the source: who may import whom (see the design's dependency direction).

Every import counts, wherever it stands (a function body, ``if TYPE_CHECKING``): a dependency is one even when it
is only for the type checker. The rules:

- ``tenants`` uses only core's plumbing (database, settings, audit, errors, the caller, input checks);
- ``core`` and ``tenants`` never import ``api`` or ``admin``;
- ``plugin_sdk`` imports nothing of the host, and a plugin imports only ``plugin_sdk`` (and its own package);
- no module uses another module's private names (``from x import _y``, ``x._y``); aliasing a module under a
  private name (``from core import schema as _schema``) is fine;
- the product's event handlers are listed in ``core.jobs.handlers.SUBSCRIPTIONS``, none registers itself.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "admin", "core", "tenants", "plugin_sdk", "plugins")
HOST = ("api", "admin", "core", "tenants", "plugins")
TENANTS_MAY_USE = frozenset({"core.db", "core.settings", "core.audit", "core.errors", "core.principal", "core.inputs"})


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    line: int
    target: str  # the module imported, or the module a name is taken from
    name: str | None  # the name taken (``from target import name``), else None


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@cache
def _imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for path in _sources():
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                found += [Import(module, node.lineno, alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:  # relative: resolved against the importing package
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, target] if target else base)
                found += [Import(module, node.lineno, target, alias.name) for alias in node.names]
    return tuple(found)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _targets(imported: Import) -> str:
    """The module an import depends on: ``from core import audit`` is ``core.audit``."""
    if imported.name and _is_module(f"{imported.target}.{imported.name}"):
        return f"{imported.target}.{imported.name}"
    return imported.target


def _top(name: str) -> str:
    return name.partition(".")[0]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _ours(name: str) -> bool:
    return _top(name) in PACKAGES


def _where(imported: Import) -> str:
    return f"{imported.module}:{imported.line} imports {_targets(imported)}"


def test_tenants_use_only_core_plumbing() -> None:
    wrong = [
        _where(i)
        for i in _imports()
        if _top(i.module) == "tenants" and _top(_targets(i)) == "core" and _targets(i) not in TENANTS_MAY_USE
    ]
    assert wrong == []


def test_core_and_tenants_do_not_import_the_api_or_the_console() -> None:
    wrong = [
        _where(i) for i in _imports() if _top(i.module) in ("core", "tenants") and _top(_targets(i)) in ("api", "admin")
    ]
    assert wrong == []


def test_plugin_sdk_imports_nothing_of_the_host() -> None:
    wrong = [_where(i) for i in _imports() if _top(i.module) == "plugin_sdk" and _top(_targets(i)) in HOST]
    assert wrong == []


def test_plugins_import_only_the_sdk() -> None:
    wrong = []
    for i in _imports():
        if _top(i.module) != "plugins" or not _ours(_targets(i)):
            continue
        own = ".".join(i.module.split(".")[:2])  # plugins.<name>
        target = _targets(i)
        if _top(target) != "plugin_sdk" and target != own and not target.startswith(own + "."):
            wrong.append(_where(i))
    assert wrong == []


def test_no_module_takes_another_modules_private_names() -> None:
    wrong = [
        f"{i.module}:{i.line} takes {i.name} from {i.target}"
        for i in _imports()
        if i.name and _private(i.name) and _ours(i.target) and not _is_module(f"{i.target}.{i.name}")
    ]
    wrong += [f"{i.module}:{i.line} imports the private module {i.target}" for i in _imports() if _private_module(i)]
    wrong += _private_attributes()
    assert wrong == []


def _private_module(imported: Import) -> bool:
    target = _targets(imported)
    return _ours(target) and any(_private(part) for part in target.split("."))


def _private_attributes() -> list[str]:
    """``module._name`` where ``module`` is one of ours bound by an import in the same file."""
    wrong = []
    for path in _sources():
        tree = _tree(path)
        modules: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules |= {alias.asname or alias.name.partition(".")[0] for alias in node.names if _ours(alias.name)}
            elif isinstance(node, ast.ImportFrom) and node.module and _ours(node.module):
                modules |= {
                    alias.asname or alias.name for alias in node.names if _is_module(f"{node.module}.{alias.name}")
                }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and _private(node.attr)
            ):
                wrong.append(f"{_module_name(path)}:{node.lineno} uses {node.value.id}.{node.attr}")
    return wrong


def test_the_products_event_handlers_are_listed_not_self_registered() -> None:
    """``on`` (a decorator that registers at import) is for the tests' and benchmarks' own handlers."""
    wrong = [
        _where(i)
        for i in _imports()
        if _targets(i) == "core.jobs.handlers" and i.name == "on" and i.module != "core.jobs.handlers"
    ]
    assert wrong == []


def test_the_checks_see_the_imports() -> None:
    """The walk finds what it must (a check that reads nothing passes for the wrong reason)."""
    seen = {(i.module, _targets(i)) for i in _imports()}
    assert ("tenants.onboarding", "core.audit") in seen
    assert ("plugins.email_smtp", "plugin_sdk") in seen
    assert ("core.jobs.runtime", "core.schema") in seen
