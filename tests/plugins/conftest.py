"""Fixtures shared by the feed's tests: an inbound plugin of the tests' own whose messages are the JSON of an
InboundResult (so a test says exactly which effects a message carries), enabled for tenant A."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from core.db import make_engine, make_sessionmaker
from core.plugins.models import PluginEnablement
from core.plugins.registry import registry
from core.settings import Settings
from plugin_sdk import InboundResult, Manifest, hookimpl
from tenants.context import tenant_context
from tests.conftest import World


def _read(context: Any, message: Any) -> InboundResult | None:
    return msgspec.json.decode(message.text.encode(), type=InboundResult)


def _reply(context: Any, message: Any, outcome: str, error: str | None) -> str:
    control = msgspec.json.decode(message.text.encode(), type=InboundResult).control_id
    return f"ACK|{outcome}|{control}|{error or ''}"


def _plugin() -> types.ModuleType:
    module = types.ModuleType("carehub_json_feed")
    _read.__name__, _reply.__name__ = "carehub_inbound_message", "carehub_inbound_reply"
    module.carehub_inbound_message = hookimpl(_read)  # type: ignore[attr-defined]
    module.carehub_inbound_reply = hookimpl(_reply)  # type: ignore[attr-defined]
    module.MANIFEST = Manifest(  # type: ignore[attr-defined]
        name="json_feed",
        version="1",
        sdk=">=1.0,<2",
        title="review feed",
        hooks=("carehub_inbound_message", "carehub_inbound_reply"),
        data_categories=("demographics", "clinical_results"),
    )
    return module


@pytest.fixture
def json_feed() -> Iterator[Any]:
    found = registry()
    module = _plugin()
    found.add(module, "test", "json_feed")
    yield found.installed["json_feed"]
    found.pm.unregister(module)
    del found.installed["json_feed"]


@pytest.fixture
async def db(settings: Settings, world: World, json_feed: Any) -> AsyncIterator[Any]:
    engine = make_engine(settings.database_url)
    maker = make_sessionmaker(engine)
    with tenant_context(world.tenant_a):
        async with maker() as session, session.begin():
            session.add(PluginEnablement(plugin="json_feed", enabled=True, config={}))
    yield maker
    await engine.dispose()


async def listening(port: int, task: asyncio.Task[Any] | None = None) -> None:
    """Wait until a listener started in this loop accepts connections on ``port`` (it first applies what earlier
    listeners stored, which takes longer on a busy machine); its task's error if it ended instead."""
    for _ in range(400):
        if task is not None and task.done():
            task.result()
            raise AssertionError("the listener stopped before it listened")
        with contextlib.closing(socket.socket()) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        await asyncio.sleep(0.025)
    raise AssertionError(f"nothing listens on {port}")
