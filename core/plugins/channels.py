"""Notification channels from plugins: each plugin gets only the operator settings its manifest names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

import pluggy

from core.plugins.registry import PluginError, manager
from plugin_sdk import Channel, Manifest


def _own_settings(plugin: object, config: Mapping[str, str]) -> dict[str, str]:
    manifest = getattr(plugin, "MANIFEST", None)
    if not isinstance(manifest, Manifest):
        raise PluginError(f"plugin {plugin!r} offers notification channels but has no MANIFEST naming its settings")
    return {key: config[key] for key in manifest.operator_settings if key in config}


def channels(config: Mapping[str, str], pm: pluggy.PluginManager | None = None) -> dict[str, Channel]:
    """The configured notification channels by name (in-app is built in and not among them)."""
    pm = pm or manager()
    found: dict[str, Channel] = {}
    for impl in pm.hook.carehub_notification_channels.get_hookimpls():
        try:
            offered = cast("Iterable[object] | None", impl.function(config=_own_settings(impl.plugin, config)))
        except ValueError as exc:
            raise PluginError(f"notification channel settings of {impl.plugin_name}: {exc}") from exc
        for channel in offered or ():
            if not isinstance(channel, Channel):
                raise PluginError(f"{impl.plugin_name}: {channel!r} is not a plugin_sdk.Channel")
            if channel.name in found or channel.name == "in_app":
                raise PluginError(f"two notification channels are named {channel.name!r}")
            found[channel.name] = channel
    return found
