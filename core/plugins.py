"""The plugin manager: bundled plugins, then those installed with a ``carehub`` entry point."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from functools import lru_cache

import pluggy

from plugin_sdk import PROJECT, Channel, HookSpecs

log = logging.getLogger(__name__)

# Modules under plugins/ that ship with carehub; each is registered like any vendor's plugin.
BUNDLED = ("plugins.email_smtp", "plugins.sms_gateway")


class PluginError(Exception):
    """A plugin is misconfigured or misbehaves (the message names the plugin and, where known, the setting)."""


@lru_cache(maxsize=1)
def manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    for name in BUNDLED:
        pm.register(importlib.import_module(name), name=name)
    pm.load_setuptools_entrypoints(PROJECT)
    pm.check_pending()
    return pm


def channels(config: Mapping[str, str], pm: pluggy.PluginManager | None = None) -> dict[str, Channel]:
    """The configured notification channels by name (in-app is built in and not among them)."""
    pm = pm or manager()
    found: dict[str, Channel] = {}
    try:
        results = pm.hook.carehub_notification_channels(config=dict(config))
    except ValueError as exc:
        raise PluginError(f"notification channel settings: {exc}") from exc
    for offered in results:
        for channel in offered or ():
            if not isinstance(channel, Channel):
                raise PluginError(f"{channel!r} is not a plugin_sdk.Channel")
            if channel.name in found or channel.name == "in_app":
                raise PluginError(f"two notification channels are named {channel.name!r}")
            found[channel.name] = channel
    return found
