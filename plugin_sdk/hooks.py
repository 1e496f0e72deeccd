"""Kept for plugins written against SDK 0.1: the markers now live in :mod:`plugin_sdk.hookspecs`."""

from plugin_sdk.hookspecs import PROJECT, HookSpecs, hookimpl, hookspec

__all__ = ["PROJECT", "HookSpecs", "hookimpl", "hookspec"]
