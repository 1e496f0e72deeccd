"""What a directory search answers: the services found, each labelled with the directory plugin that found it,
and how each directory fared."""

from __future__ import annotations

import msgspec


class ServiceOut(msgspec.Struct):
    """One service at a location, as a directory plugin described it (its fields are the plugin's word)."""

    plugin: str  # the directory plugin that found it
    id: str  # the service's id in that directory
    name: str
    organization: str
    description: str | None
    categories: list[str]
    address: dict[str, str] | None
    phone: str | None
    url: str | None
    hours: str | None
    languages: list[str]
    eligibility: str | None


class DirectoryOut(msgspec.Struct):
    """A directory that was asked: how many services it found, or why it found none this time."""

    plugin: str
    title: str
    found: int
    # Null when it answered; otherwise what the coordinator can know (the tenant's admins see the full error
    # in the plugin's status).
    error: str | None


class DirectorySearchOut(msgspec.Struct):
    items: list[ServiceOut]  # each directory's services in its own order, directories by name
    directories: list[DirectoryOut]
