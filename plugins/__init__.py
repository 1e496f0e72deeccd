"""Bundled plugins; each imports only ``plugin_sdk``."""
