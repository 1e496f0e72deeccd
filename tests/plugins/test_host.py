"""The plugin host: loading refuses what does not fit (naming the plugin), each channel plugin sees only its own
operator settings, and a contained call turns a crash, a hang or garbage into a failure the breaker counts."""

from __future__ import annotations

import asyncio
import types
from datetime import timedelta
from typing import Any

import pytest

from core.db import utcnow
from core.plugins import channels, invoke
from core.plugins.models import PluginEnablement
from core.plugins.registry import load
from plugin_sdk import Manifest, hookimpl
from plugin_sdk.payloads import Health
from tests.conftest import base_settings


def _module(name: str, sdk: str = ">=1.0,<2", **hooks: Any) -> types.ModuleType:
    module = types.ModuleType(f"carehub_{name}")
    for hook, function in hooks.items():
        function.__name__ = hook
        setattr(module, hook, hookimpl(function))
    module.MANIFEST = Manifest(name=name, version="0.3.0", sdk=sdk, title=name, hooks=tuple(hooks))  # type: ignore[attr-defined]
    return module


def test_an_incompatible_sdk_range_is_refused_naming_the_plugin() -> None:
    found = load((), installed=False)

    async def health(context: Any) -> Health:
        return Health(ok=True)

    found.add(_module("old_vendor", sdk=">=0.1,<0.2", carehub_health_check=health), "entry point", "old_vendor")
    found.add(_module("good_vendor", carehub_health_check=health), "entry point", "good_vendor")
    [refused] = found.refused
    assert refused.name == "old_vendor" and "needs plugin SDK >=0.1,<0.2" in refused.reason
    assert "good_vendor" in found.installed and "old_vendor" not in found.installed


def test_a_manifest_that_lies_about_its_hooks_is_refused() -> None:
    found = load((), installed=False)

    async def health(context: Any) -> Health:
        return Health(ok=True)

    module = _module("liar", carehub_health_check=health)
    module.MANIFEST = Manifest(name="liar", version="1", sdk=">=1.0", title="x", hooks=())  # type: ignore[attr-defined]
    found.add(module, "entry point", "liar")
    assert found.refused and "implements ['carehub_health_check']" in found.refused[0].reason


def test_each_channel_plugin_gets_only_its_own_settings() -> None:
    seen: dict[str, dict[str, str]] = {}
    found = load(("plugins.email_smtp", "plugins.sms_gateway"), installed=False)
    spy = types.ModuleType("carehub_spy")

    def carehub_notification_channels(config: dict[str, str]) -> list[Any]:
        seen["spy"] = dict(config)
        return []

    spy.carehub_notification_channels = hookimpl(carehub_notification_channels)  # type: ignore[attr-defined]
    spy.MANIFEST = Manifest(  # type: ignore[attr-defined]
        name="spy",
        version="1",
        sdk=">=1.0,<2",
        title="spy",
        hooks=("carehub_notification_channels",),
        operator_settings=("sms_gateway_url",),
        per_tenant=False,
    )
    found.add(spy, "entry point", "spy")
    config = {"smtp_host": "", "smtp_password": "smtp-secret", "sms_gateway_url": "", "sms_gateway_token": "t"}
    assert channels(config, pm=found.pm) == {}
    assert seen["spy"] == {"sms_gateway_url": ""}  # not the SMTP password, not the gateway token


def _row() -> PluginEnablement:
    return PluginEnablement(plugin="x", failures=0, config={}, secret_keys=[], watermarks={})


async def test_crash_hang_and_garbage_are_contained_and_open_the_breaker() -> None:
    settings = base_settings(plugin_timeout_ms=200, plugin_breaker_failures=3, plugin_breaker_cooldown_ms=60_000)
    found = load((), installed=False)
    behaviour = {"mode": "crash"}

    async def health(context: Any) -> Any:
        if behaviour["mode"] == "crash":
            raise RuntimeError("vendor bug")
        if behaviour["mode"] == "hang":
            await asyncio.sleep(5)
        if behaviour["mode"] == "garbage":
            return {"ok": "maybe", "extra": 1}
        return Health(ok=True, detail="fine")

    found.add(_module("flaky", carehub_health_check=health), "entry point", "flaky")
    plugin = found.installed["flaky"]
    row = _row()
    for mode, reason in (("crash", "raised RuntimeError"), ("hang", "took longer"), ("garbage", "returned garbage")):
        behaviour["mode"] = mode
        with pytest.raises(invoke.PluginFailed, match=reason):
            await invoke.contained(row, plugin, "carehub_health_check", tenant=None, config={}, settings=settings)
    assert row.failures == 3 and invoke.breaker_open(row) and "garbage" in (row.last_error or "")
    behaviour["mode"] = "ok"
    with pytest.raises(invoke.PluginFailed, match="circuit breaker is open"):
        await invoke.contained(row, plugin, "carehub_health_check", tenant=None, config={}, settings=settings)
    row.open_until = utcnow() - timedelta(seconds=1)  # the cool-down passes (no clock to race on a slow machine)
    # one trial call, which succeeds and closes the breaker
    result = await invoke.contained(row, plugin, "carehub_health_check", tenant=None, config={}, settings=settings)
    assert result == Health(ok=True, detail="fine") and row.failures == 0 and not invoke.breaker_open(row)


async def test_an_outbound_call_to_the_metadata_service_is_refused() -> None:
    settings = base_settings()
    found = load((), installed=False)

    async def health(context: Any) -> Health:
        await context.http.get("http://169.254.169.254/latest/meta-data/")
        return Health(ok=True)

    module = _module("nosy", carehub_health_check=health)
    module.MANIFEST = Manifest(  # type: ignore[attr-defined]
        name="nosy",
        version="1",
        sdk=">=1.0,<2",
        title="n",
        hooks=("carehub_health_check",),
        outbound_hosts=("169.254.169.254",),
    )
    found.add(module, "entry point", "nosy")
    with pytest.raises(invoke.PluginFailed, match=r"link-local|loopback"):
        await invoke.call(found.installed["nosy"], "carehub_health_check", tenant=None, config={}, settings=settings)


def test_the_sdk_speaks_the_consent_vocabulary() -> None:
    """A manifest's data categories are carehub's consent categories (the SDK cannot import them, so it copies
    them; this keeps the copy true)."""
    from core.consent.categories import CATEGORIES, SENSITIVE_LABELS
    from plugin_sdk import payloads

    assert payloads.DATA_CATEGORIES == CATEGORIES
    assert payloads.SENSITIVE_LABELS == SENSITIVE_LABELS
