"""What plugin vendors import: hook specifications, payloads, effects, the manifest and a test harness.
Imports nothing from the host.

A plugin is a module (bundled under ``plugins/``, or an installed distribution with a ``carehub`` entry point)
that declares ``MANIFEST = Manifest(...)`` and implements hooks from :class:`HookSpecs` as functions marked with
:data:`hookimpl`.
"""

from plugin_sdk.context import PluginContext
from plugin_sdk.effects import (
    AddObservation,
    AnyEffect,
    CreateTask,
    Effect,
    InboundResult,
    MergePatient,
    PullBatch,
    RecordCondition,
    RecordEncounter,
    UpsertPatient,
)
from plugin_sdk.hookspecs import HOOK_NAMES, PROJECT, HookSpecs, hookimpl, hookspec
from plugin_sdk.manifest import ConfigProblem, Manifest
from plugin_sdk.notify import DETAIL_LEVELS, Channel, ChannelError, Detail, OutboundMessage
from plugin_sdk.outbound import OutboundRefused
from plugin_sdk.version import SDK_VERSION

__all__ = [
    "DETAIL_LEVELS",
    "HOOK_NAMES",
    "PROJECT",
    "SDK_VERSION",
    "AddObservation",
    "AnyEffect",
    "Channel",
    "ChannelError",
    "ConfigProblem",
    "CreateTask",
    "Detail",
    "Effect",
    "HookSpecs",
    "InboundResult",
    "Manifest",
    "MergePatient",
    "OutboundMessage",
    "OutboundRefused",
    "PluginContext",
    "PullBatch",
    "RecordCondition",
    "RecordEncounter",
    "UpsertPatient",
    "hookimpl",
    "hookspec",
]
