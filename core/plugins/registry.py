"""Which plugins this process has: the bundled ones, then those installed with a ``carehub`` entry point, each
checked the same way (its manifest, its SDK range, its hooks against the hookspecs). A plugin that fails a check
is refused, with the reason naming it, and the others load; ``carehub plugins list`` shows both.

Built on demand (:func:`registry`), not at import, as pluggy's eggsample host does.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from types import ModuleType

import pluggy

from plugin_sdk import HOOK_NAMES, PROJECT, SDK_VERSION, HookSpecs, Manifest

log = logging.getLogger(__name__)

# Modules under plugins/ that ship with carehub; each goes through the same checks as a vendor's plugin.
BUNDLED = ("plugins.email_smtp", "plugins.sms_gateway", "plugins.ehr_fhir", "plugins.ehr_hl7v2")


class PluginError(Exception):
    """A plugin is misconfigured or misbehaves (the message names the plugin and, where known, the setting)."""


@dataclass(frozen=True)
class Installed:
    name: str
    module: ModuleType
    manifest: Manifest
    source: str  # "bundled" or "entry point <distribution> <version>"

    def implements(self, hook: str) -> bool:
        return hook in self.manifest.hooks


@dataclass(frozen=True)
class Refused:
    name: str
    source: str
    reason: str


@dataclass
class Registry:
    pm: pluggy.PluginManager
    installed: dict[str, Installed] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)

    def get(self, name: str) -> Installed | None:
        return self.installed.get(name)

    def implementing(self, hook: str) -> list[Installed]:
        return [plugin for plugin in self.installed.values() if plugin.implements(hook)]

    def add(self, module: ModuleType, source: str, fallback_name: str) -> None:
        """Check ``module`` and register it, or record why it is refused."""
        manifest = getattr(module, "MANIFEST", None)
        if not isinstance(manifest, Manifest):
            self._refuse(fallback_name, source, "it has no MANIFEST = plugin_sdk.Manifest(...)")
            return
        name = manifest.name
        problems = manifest.problems(set(HOOK_NAMES))
        if not problems and not manifest.supports(SDK_VERSION):
            problems.append(
                f"{name} {manifest.version} needs plugin SDK {manifest.sdk}; this carehub has SDK {SDK_VERSION}"
            )
        implemented = {h for h in HOOK_NAMES if hasattr(getattr(module, h, None), f"{PROJECT}_impl")}
        if not problems and implemented != set(manifest.hooks):
            problems.append(
                f"its manifest lists the hooks {sorted(manifest.hooks)} but it implements {sorted(implemented)}"
            )
        if not problems and name in self.installed:
            problems.append(f"the name {name!r} is taken by {self.installed[name].source}")
        if problems:
            self._refuse(name, source, "; ".join(problems))
            return
        try:
            self.pm.register(module, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self._refuse(name, source, f"its hooks do not match the hookspecs: {exc}")
            return
        self.installed[name] = Installed(name=name, module=module, manifest=manifest, source=source)

    def _refuse(self, name: str, source: str, reason: str) -> None:
        log.error("plugin %s (%s) refused: %s", name, source, reason)
        self.refused.append(Refused(name=name, source=source, reason=reason))


def load(bundled: tuple[str, ...] = BUNDLED, *, installed: bool = True) -> Registry:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    found = Registry(pm)
    for name in bundled:
        # A bundled plugin that does not import is a broken installation: fail loudly, not silently without it.
        found.add(importlib.import_module(name), "bundled", name.rsplit(".", 1)[-1])
    if installed:
        for point in entry_points(group=PROJECT):
            dist = point.dist
            source = f"entry point {point.name} of {dist.name if dist else '?'} {dist.version if dist else ''}".strip()
            try:
                module = point.load()
            except Exception as exc:  # a vendor's import error must not stop carehub
                found._refuse(point.name, source, f"it does not import: {type(exc).__name__}: {exc}")
                continue
            if not isinstance(module, ModuleType):
                found._refuse(point.name, source, "its entry point must name a module")
                continue
            found.add(module, source, point.name)
    pm.check_pending()
    return found


@lru_cache(maxsize=1)
def registry() -> Registry:
    return load()


def manager() -> pluggy.PluginManager:
    return registry().pm
