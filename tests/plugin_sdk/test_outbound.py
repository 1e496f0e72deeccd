"""The outbound guard (plugin_sdk.outbound): named hosts only, public addresses only unless a network is allowed,
every redirect checked again. Requests go to a local server (conftest.py), never off this machine."""

from __future__ import annotations

from types import ModuleType

import httpx
import pytest

from plugin_sdk import Manifest, OutboundRefused, PluginContext, hookimpl
from plugin_sdk.outbound import OutboundPolicy, guarded_client
from plugin_sdk.payloads import Health
from plugin_sdk.testing import PluginHarness

from .conftest import LocalServer

LOOPBACK = ("127.0.0.0/8",)


def policy(*hosts: str, allow: tuple[str, ...] = ()) -> OutboundPolicy:
    return OutboundPolicy.build("outbound_test", hosts, allowed_networks=allow, timeout_seconds=2)


async def get(rules: OutboundPolicy, url: str) -> httpx.Response:
    async with guarded_client(rules) as client:
        return await client.get(url)


# -----------------------------------------------------------------------------------------------------------
# The rules
# -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "::1", "fe80::1",
     "::ffff:127.0.0.1", "224.0.0.1", "0.0.0.0", "240.0.0.1"],  # noqa: S104 - an address refused, not bound
)  # fmt: skip
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    with pytest.raises(OutboundRefused, match="CAREHUB_PLUGIN_ALLOW_NETWORKS"):
        policy("svc.example.org").check_address("svc.example.org", address)


def test_a_public_address_is_allowed() -> None:
    policy("svc.example.org").check_address("svc.example.org", "93.184.215.14")


def test_an_allowed_network_lets_its_addresses_through_and_no_others() -> None:
    rules = policy("ehr.hospital.internal", allow=("10.20.0.0/16",))
    rules.check_address("ehr.hospital.internal", "10.20.3.4")
    with pytest.raises(OutboundRefused):
        rules.check_address("ehr.hospital.internal", "10.21.0.1")
    with pytest.raises(OutboundRefused):
        rules.check_address("ehr.hospital.internal", "169.254.169.254")


def test_hosts_named_by_the_manifest_or_the_configuration() -> None:
    rules = OutboundPolicy.build("p", ["api.example.org", "*.fhir.example.com"], ["https://EHR.Tenant.org/fhir/R4"])
    for host in ("api.example.org", "API.example.org.", "a.fhir.example.com", "b.a.fhir.example.com", "ehr.tenant.org"):
        rules.check_host(host)
    for host in ("example.org", "fhir.example.com", "evil-fhir.example.com", "api.example.org.evil.net", "tenant.org"):
        with pytest.raises(OutboundRefused, match="not a host its manifest or configuration names"):
            rules.check_host(host)


# -----------------------------------------------------------------------------------------------------------
# Requests, against a local server
# -----------------------------------------------------------------------------------------------------------


async def test_the_metadata_service_is_refused_even_when_named_and_loopback_allowed() -> None:
    with pytest.raises(OutboundRefused, match=r"169\.254\.169\.254"):
        await get(policy("169.254.169.254", allow=LOOPBACK), "http://169.254.169.254/latest/meta-data/")


async def test_loopback_is_refused_without_an_allowed_network(local_server: LocalServer) -> None:
    with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1.*loopback"):
        await get(policy("127.0.0.1"), local_server.url())
    assert local_server.requests == []


async def test_loopback_is_allowed_with_its_network(local_server: LocalServer) -> None:
    response = await get(policy("127.0.0.1", allow=LOOPBACK), local_server.url())
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert local_server.requests == [{"path": "/ok", "host": f"127.0.0.1:{local_server.port}"}]


async def test_a_host_not_named_is_refused(local_server: LocalServer) -> None:
    # localhost is this machine too, but the point is that nobody named it: refused before any lookup.
    with pytest.raises(OutboundRefused, match="'localhost'"):
        await get(policy("127.0.0.1", allow=LOOPBACK), local_server.url(host="localhost"))
    assert local_server.requests == []


async def test_a_redirect_on_the_same_host_is_followed(local_server: LocalServer) -> None:
    response = await get(policy("127.0.0.1", allow=LOOPBACK), local_server.url("/to/ok"))
    assert response.status_code == 200
    assert [r["path"] for r in local_server.requests] == ["/to/ok", "/ok"]


async def test_a_redirect_to_another_host_is_refused(local_server: LocalServer) -> None:
    with pytest.raises(OutboundRefused, match="'localhost'"):
        await get(policy("127.0.0.1", allow=LOOPBACK), local_server.url(f"/away/localhost:{local_server.port}/ok"))
    assert [r["path"] for r in local_server.requests] == [f"/away/localhost:{local_server.port}/ok"]


async def test_a_redirect_to_the_metadata_service_is_refused(local_server: LocalServer) -> None:
    rules = policy("127.0.0.1", "169.254.169.254", allow=LOOPBACK)
    with pytest.raises(OutboundRefused, match=r"169\.254\.169\.254"):
        await get(rules, local_server.url("/away/169.254.169.254/latest/meta-data/"))
    assert len(local_server.requests) == 1


async def test_a_scheme_other_than_http_is_refused() -> None:
    with pytest.raises((OutboundRefused, httpx.UnsupportedProtocol)):
        await get(policy("files.example.org"), "ftp://files.example.org/x")


# -----------------------------------------------------------------------------------------------------------
# Through the harness: the configuration's URL names the host, as the host's client does
# -----------------------------------------------------------------------------------------------------------


def calling_plugin() -> ModuleType:
    @hookimpl
    async def carehub_health_check(context: PluginContext) -> Health:
        response = await context.http.get(str(context.config["base_url"]) + "/ok")
        return Health(ok=response.status_code == 200)

    plugin = ModuleType("outbound_test_plugin")
    plugin.carehub_health_check = carehub_health_check  # type: ignore[attr-defined]
    plugin.MANIFEST = Manifest(  # type: ignore[attr-defined]
        name="outbound_test",
        version="1.0.0",
        sdk=">=1.0,<2",
        title="Outbound test",
        hooks=("carehub_health_check",),
        config_schema={"type": "object", "properties": {"base_url": {"type": "string"}}},
        outbound_config_keys=("base_url",),
    )
    return plugin


async def test_the_harness_client_follows_the_same_rules(local_server: LocalServer) -> None:
    config = {"base_url": f"http://127.0.0.1:{local_server.port}"}
    async with PluginHarness(calling_plugin(), config=config, allow_networks=LOOPBACK) as hub:
        assert (await hub.call("carehub_health_check")).ok
    async with PluginHarness(calling_plugin(), config=config) as hub:
        with pytest.raises(OutboundRefused):
            await hub.call("carehub_health_check")
    assert len(local_server.requests) == 1
