"""The api HTTP service: the read and manage side."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from cpcs.context import Context
from cpcs.web import make_app
from cpcs_api import (
    accounts,
    alerts,
    community,
    exports,
    image_views,
    legacy,
    observations,
    periods,
    recalibration,
    status,
    subtraction,
    templates,
    trends,
)
from cpcs_api.outbound import routes as outbound
from cpcs_api.web import routes as web


def routers() -> list[APIRouter]:
    return [
        alerts.router(),
        templates.router(),
        subtraction.router(),
        image_views.router(),
        observations.router(),
        exports.router(),
        recalibration.router(),
        accounts.router(),
        community.router(),
        periods.router(),
        trends.router(),
        legacy.router(),
        outbound.router(),
        status.router(),
        web.router(),
    ]


def create_app(context: Context) -> FastAPI:
    return make_app(context, title="CPCS api", routers=routers())
