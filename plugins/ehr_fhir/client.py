"""The FHIR REST calls the plugin makes, authenticated, and only ever to the configured EHR's own origin.

Every request goes through ``context.http`` (the host's guarded client). A URL the EHR hands back (a search's
``next`` link, a ``Location``) is followed only if it has the base URL's scheme, host and port: the host's guard
would let a request reach any host of the configuration (the token endpoint's too), so this is checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from plugin_sdk import OutboundRefused, PluginContext
from plugins.ehr_fhir import auth
from plugins.ehr_fhir.config import FhirConfig
from plugins.ehr_fhir.transport import FhirError, error_detail, send

FHIR_JSON = "application/fhir+json"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return (url.scheme, url.host.lower(), url.port or default)


class FhirClient:
    def __init__(self, context: PluginContext, config: FhirConfig | None = None) -> None:
        self.context = context
        self.config = config or FhirConfig.from_mapping(context.config)
        self.base = httpx.URL(self.config.base_url + "/")

    def url(self, path: str) -> str:
        """``path`` (``Patient``, ``Patient/123``) under the base URL; an absolute URL must be on the base's origin."""
        if "://" not in path:
            return self.config.base_url + "/" + path.lstrip("/")
        self.check_origin(path)
        return path

    def check_origin(self, url: str) -> None:
        """Raise :class:`~plugin_sdk.OutboundRefused` unless ``url`` is on the base URL's scheme, host and port."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            raise OutboundRefused(f"the EHR handed back a URL that is not one: {url[:200]!r}") from None
        if _origin(target) != _origin(self.base):
            theirs, ours = ("{}://{}:{}".format(*_origin(u)) for u in (target, self.base))
            raise OutboundRefused(
                f"the EHR handed back a URL outside the base URL's origin ({theirs} is not {ours}): not followed"
            )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """One authenticated request. A 401 for a cached token drops it and tries once more with a new one."""
        url = self.url(path)
        token, cached = await auth.access_token(self.context, self.config)
        response = await self._send(method, url, token, params, body)
        if response.status_code == 401 and cached:
            auth.forget(self.context, self.config)
            token, _ = await auth.access_token(self.context, self.config, fresh=True)
            response = await self._send(method, url, token, params, body)
        if response.status_code == 401:
            raise FhirError(
                f"the EHR refused carehub's access token for {method} {httpx.URL(url).path} ({error_detail(response)})",
                401,
            )
        return response

    async def _send(
        self,
        method: str,
        url: str,
        token: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
    ) -> httpx.Response:
        headers = {"Accept": FHIR_JSON, "Authorization": f"Bearer {token}"}
        kwargs: dict[str, Any] = {"headers": headers}
        if params:
            kwargs["params"] = dict(params)
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
            kwargs["json"] = body
        return await send(self.context, method, url, **kwargs)

    async def read_json(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> tuple[dict[str, Any], httpx.Response]:
        """GET a resource or Bundle; raise :class:`FhirError` for an error answer or a body that is not JSON."""
        response = await self.request("GET", path, params=params)
        return self.json_of(response), response

    @staticmethod
    def json_of(response: httpx.Response) -> dict[str, Any]:
        if not response.is_success:
            raise FhirError(
                f"{response.request.method} {response.request.url.path} answered {error_detail(response)}",
                response.status_code,
            )
        try:
            body = response.json(parse_float=Decimal)
        except ValueError:
            raise FhirError(f"{response.request.url.path} answered a body that is not JSON") from None
        if not isinstance(body, dict) or "resourceType" not in body:
            raise FhirError(f"{response.request.url.path} answered JSON that is not a FHIR resource")
        return body
