"""The plugin host: loading and checking plugins, per-tenant enablement, calling hooks with containment, and
applying the effects they ask for."""

from core.plugins.channels import channels
from core.plugins.registry import PluginError, Registry, manager, registry

__all__ = ["PluginError", "Registry", "channels", "manager", "registry"]
