"""The Litestar application factory."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.exceptions import RedisError

from api.auth import PUBLIC, AuthMiddleware
from api.body_limits import check_request
from api.controllers.access import AccessController
from api.controllers.alerts import AlertController
from api.controllers.appointments import AppointmentController
from api.controllers.audit import AuditController
from api.controllers.auth import AuthController
from api.controllers.careplans import CarePlanController
from api.controllers.careteams import CareTeamController
from api.controllers.consent import ConsentController, PortalConsentController
from api.controllers.directory import DirectoryController
from api.controllers.fhir import FhirController
from api.controllers.health import healthz, metrics_endpoint, readyz
from api.controllers.jobs import JobController
from api.controllers.links import LinkController
from api.controllers.messaging import ThreadController
from api.controllers.network import InvitationController, NetworkController
from api.controllers.notifications import AlertSettingsController, NotificationPreferenceController
from api.controllers.patients import PatientController
from api.controllers.plugins import InboundMessageController, NetworkPluginController, PluginController
from api.controllers.portal import PortalController
from api.controllers.results import ResultController
from api.controllers.tasks import TaskController
from api.controllers.users import UserController
from api.deps import DEPENDENCIES
from api.errors import EXCEPTION_HANDLERS
from api.hub import Hub
from api.openapi import ContractJsonPlugin
from api.request_id import RequestIdMiddleware
from core.settings import Settings, get_settings

VERSION = "0.1.0"
log = logging.getLogger("carehub.api")


def _opt(request: Request[Any, Any, Any]) -> dict[str, Any]:
    handler = request.scope.get("route_handler")
    return handler.opt if handler is not None else {}


def _is_token_endpoint(request: Request[Any, Any, Any]) -> bool:
    return bool(_opt(request).get("token_endpoint"))


def _is_api_call(request: Request[Any, Any, Any]) -> bool:
    opt = _opt(request)
    return not opt.get(PUBLIC) and not opt.get("rate_limit_exempt")


class FailOpenRateLimit(RateLimitMiddleware):
    """Per-client limits that let requests through (and log) while Redis, their store, is unreachable."""

    async def retrieve_cached_history(self, key: str, store: Store) -> CacheObject:
        try:
            return await super().retrieve_cached_history(key, store)
        except RedisError as exc:
            log.warning("rate limit store unreachable, not limiting: %s", exc)
            return CacheObject(history=[], reset=0)

    async def set_cached_history(self, key: str, cache_object: CacheObject, store: Store) -> None:
        try:
            await super().set_cached_history(key, cache_object, store)
        except RedisError as exc:
            log.warning("rate limit store unreachable, not limiting: %s", exc)


def _rate_limits(settings: Settings) -> list[RateLimitConfig]:
    """Per-client budgets: a small one for sign-in endpoints, a larger one for the rest (0 turns one off)."""
    budgets = (
        (settings.rate_limit_token_per_minute, "rate_limit_token", _is_token_endpoint),
        (settings.rate_limit_api_per_minute, "rate_limit_api", _is_api_call),
    )
    return [
        RateLimitConfig(
            rate_limit=("minute", per_minute),
            store=store,
            check_throttle_handler=applies,
            exclude=["/schema"],
            middleware_class=FailOpenRateLimit,
        )
        for per_minute, store, applies in budgets
        if per_minute
    ]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    hub = Hub.create(settings)
    if hub.redis is not None:
        stores: dict[str, Any] = {
            name: RedisStore(hub.redis, namespace=f"carehub:{name}", handle_client_shutdown=False)
            for name in ("rate_limit_token", "rate_limit_api")
        }
    else:
        stores = {"rate_limit_token": MemoryStore(), "rate_limit_api": MemoryStore()}
    openapi = OpenAPIConfig(
        title="carehub API",
        version=VERSION,
        description="Care coordination hub for a regional health network. Errors are RFC 9457 problem+json.",
        path="/schema",
        render_plugins=[ContractJsonPlugin(), SwaggerRenderPlugin()],
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
        ),
        security=[{"bearer": []}],
    )
    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics_endpoint,
            AuthController,
            NetworkController,
            NetworkPluginController,
            PluginController,
            InboundMessageController,
            DirectoryController,
            InvitationController,
            UserController,
            PatientController,
            LinkController,
            AuditController,
            CareTeamController,
            CarePlanController,
            TaskController,
            AppointmentController,
            ThreadController,
            ResultController,
            PortalController,
            AlertSettingsController,
            NotificationPreferenceController,
            FhirController,
            JobController,
            AlertController,
            ConsentController,
            PortalConsentController,
            AccessController,
        ],
        dependencies=DEPENDENCIES,
        middleware=[RequestIdMiddleware, *(c.middleware for c in _rate_limits(settings)), AuthMiddleware],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi,
        state=State({"hub": hub}),
        stores=stores,
        on_startup=[hub.start],
        on_shutdown=[hub.stop],
        request_max_body_size=settings.max_body_bytes,
        before_request=check_request,
        debug=False,
    )
