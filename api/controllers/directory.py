"""Community services for care coordinators, from the resource directory plugins the tenant uses."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from api.deps import Caller, Config, Db
from core.directory import service
from core.directory.schemas import DirectorySearchOut
from core.inputs import SAFE_LINE

MAX_PER_DIRECTORY = 50


class DirectoryController(Controller):
    path = "/api/v1/directory"
    tags = ["directory"]

    @get(
        "/services",
        summary="Search community services in every directory this tenant uses",
        description=(
            "Each directory plugin the tenant enabled (and the network allows) is asked with the tenant's own "
            "configuration; the services come back together, each naming the plugin that found it. A directory "
            "that fails or does not answer in time is listed in `directories` with an `error`, and the others' "
            "services still come back. Give `q` or `category`."
        ),
    )
    async def search(
        self,
        session: Db,
        principal: Caller,
        settings: Config,
        q: Annotated[
            str | None, QueryParameter(min_length=1, max_length=200, pattern=SAFE_LINE, description="what to look for")
        ] = None,
        category: Annotated[
            str | None,
            QueryParameter(min_length=1, max_length=100, pattern=SAFE_LINE, description="food, housing, transport ..."),
        ] = None,
        postal_code: Annotated[
            str | None, QueryParameter(pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{1,15}$", description="near this place")
        ] = None,
        radius_km: Annotated[
            float | None, QueryParameter(ge=0.1, le=500, description="how far from postal_code, in km")
        ] = None,
        language: Annotated[
            str | None,
            QueryParameter(
                pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$", description="a language spoken (BCP 47, e.g. es)"
            ),
        ] = None,
        limit: Annotated[
            int,
            QueryParameter(
                ge=1, le=MAX_PER_DIRECTORY, description=f"services per directory, at most {MAX_PER_DIRECTORY}"
            ),
        ] = 20,
    ) -> DirectorySearchOut:
        return await service.search(
            session,
            principal,
            settings,
            text=q,
            category=category,
            postal_code=postal_code,
            radius_km=radius_km,
            language=language,
            limit=limit,
        )
