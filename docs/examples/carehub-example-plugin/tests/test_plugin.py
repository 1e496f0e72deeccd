"""The example directory plugin against a local HSDS directory (see conftest.py), through carehub's harness.

The directory listens on 127.0.0.1, which carehub refuses to let a plugin call unless the operator allows the
network (``CAREHUB_PLUGIN_ALLOW_NETWORKS``): the harness takes the same permission as ``allow_networks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from plugin_sdk import OutboundRefused
from plugin_sdk.payloads import ServiceQuery, ServiceRecord
from plugin_sdk.testing import ConfigRefused, PluginHarness

import carehub_example_directory

if TYPE_CHECKING:
    from conftest import Directory

LOOPBACK = ("127.0.0.0/8",)


def harness(directory: Directory, api_key: str | None = None) -> PluginHarness:
    config = {"base_url": directory.base_url, "api_key": api_key or directory.api_key}
    return PluginHarness(carehub_example_directory, config=config, allow_networks=LOOPBACK)


async def test_a_search_finds_each_service_at_its_locations(directory: Directory) -> None:
    async with harness(directory) as hub:
        found = await hub.call("carehub_directory_search", query=ServiceQuery(text="pantry"))
    assert [record.id for record in found] == ["sal-food-1-main", "sal-food-1-east"]
    main = found[0]
    assert isinstance(main, ServiceRecord)
    assert (main.name, main.organization) == ("Harbor Food Pantry", "Harbor Community Services")
    assert main.address == {
        "line": "1 Pier Rd",
        "city": "Harbor",
        "state": "CA",
        "postal_code": "90001",
        "country": "US",
    }
    assert (main.phone, main.hours) == ("+1 555 0142", "Tue and Thu 10:00-14:00")
    assert main.categories == ("Food",)
    assert main.languages == ("English", "Spanish")
    assert main.eligibility == "Residents of Harbor County"
    assert found[1].address is None  # that location has a postal address only


async def test_the_request_carries_the_search_the_limit_and_the_key(directory: Directory) -> None:
    async with harness(directory) as hub:
        found = await hub.call(
            "carehub_directory_search", query=ServiceQuery(text="shelter", category="housing", limit=5)
        )
    assert [record.name for record in found] == ["Emergency Shelter Line"]
    assert found[0].address is None and found[0].id == "svc-housing-1"  # no location: the service itself
    (request,) = directory.requests
    assert request["path"] == "/hsds/services"
    assert request["query"] == {"search": "shelter housing", "page": "1", "per_page": "5", "full": "true"}
    assert request["api_key"] == directory.api_key


async def test_no_more_than_the_limit(directory: Directory) -> None:
    async with harness(directory) as hub:
        found = await hub.call("carehub_directory_search", query=ServiceQuery(text="harbor", limit=1))
    assert len(found) == 1


async def test_a_refused_key_is_the_plugins_failure(directory: Directory) -> None:
    async with harness(directory, api_key="wrong") as hub:
        with pytest.raises(httpx.HTTPStatusError):
            await hub.call("carehub_directory_search", query=ServiceQuery(text="food"))


async def test_health_check(directory: Directory) -> None:
    async with harness(directory) as hub:
        health = await hub.call("carehub_health_check")
    assert health.ok and health.detail == "2 services listed"
    async with harness(directory, api_key="wrong") as hub:
        health = await hub.call("carehub_health_check")
    assert not health.ok and "refused the API key" in (health.detail or "")


async def test_loopback_is_refused_unless_the_operator_allows_it(directory: Directory) -> None:
    config = {"base_url": directory.base_url, "api_key": directory.api_key}
    async with PluginHarness(carehub_example_directory, config=config) as hub:
        with pytest.raises(OutboundRefused, match="CAREHUB_PLUGIN_ALLOW_NETWORKS"):
            await hub.call("carehub_directory_search", query=ServiceQuery(text="food"))
        health = await hub.call("carehub_health_check")
    assert not health.ok
    assert directory.requests == []


def test_a_configuration_is_checked_against_the_schema() -> None:
    with pytest.raises(ConfigRefused) as refused:
        PluginHarness(carehub_example_directory, config={"api_key": "a-key"})
    assert [problem.path for problem in refused.value.problems] == ["base_url"]
    with pytest.raises(ConfigRefused) as refused:
        PluginHarness(carehub_example_directory, config={"base_url": "ftp://files.example.org", "api_key": "a-key"})
    assert [problem.path for problem in refused.value.problems] == ["base_url"]


def test_the_api_key_is_a_secret() -> None:
    assert carehub_example_directory.MANIFEST.sensitive_keys == ("api_key",)
