"""The api HTTP service: the read and manage side."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from cpcs.context import Context
from cpcs.web import make_app
from cpcs_api import accounts, alerts, legacy, observations


def routers() -> list[APIRouter]:
    return [alerts.router(), observations.router(), accounts.router(), legacy.router()]


def create_app(context: Context) -> FastAPI:
    return make_app(context, title="CPCS api", routers=routers())
