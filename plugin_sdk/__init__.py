"""What plugin vendors import: hook specifications and payload types. Imports nothing from the host.

A plugin is a module (or an installed distribution with a ``carehub`` entry point) whose functions are marked
with :data:`hookimpl` and named after a hook in :class:`HookSpecs`.
"""

from plugin_sdk.hooks import PROJECT, HookSpecs, hookimpl, hookspec
from plugin_sdk.notify import DETAIL_LEVELS, Channel, ChannelError, Detail, OutboundMessage

__all__ = [
    "DETAIL_LEVELS",
    "PROJECT",
    "Channel",
    "ChannelError",
    "Detail",
    "HookSpecs",
    "OutboundMessage",
    "hookimpl",
    "hookspec",
]
