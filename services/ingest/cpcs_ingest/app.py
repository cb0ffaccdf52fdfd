"""The ingest HTTP service."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from cpcs.context import Context
from cpcs.web import make_app
from cpcs_ingest import legacy, v1


def routers() -> list[APIRouter]:
    return [legacy.router(), v1.router()]


def create_app(context: Context) -> FastAPI:
    return make_app(context, title="CPCS ingest", routers=routers())
