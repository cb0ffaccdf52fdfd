"""REST v1: who am I, users (admin), observatories."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from cpcs.domain import accounts as account_store
from cpcs.domain import instruments as instrument_store
from cpcs.schemas import UNREADABLE_BODY_RESPONSE, InstrumentOut, NewUserOut, ObservatoryOut, Role, UserOut
from cpcs.web import CONFLICT_RESPONSE, ERROR_RESPONSES, AdminDep, ContextDep, SessionDep, UserDep


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    observatory: str = Field(min_length=1, max_length=200)
    lon_deg: float | None = Field(None, ge=-180, le=360)
    lat_deg: float | None = Field(None, ge=-90, le=90)
    elevation_m: float | None = None
    role: Role = "observer"


class InstrumentIn(BaseModel):
    observatory: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    gain_e_per_adu: float | None = Field(None, gt=0)
    pixel_scale_arcsec: float | None = Field(None, gt=0, le=3600)
    saturation_adu: float | None = Field(None, gt=0)
    filters: dict[str, str] = Field(default_factory=dict, description="Header filter names -> bands")
    default_filter: str | None = Field(None, max_length=40)


def router() -> APIRouter:
    api = APIRouter(
        prefix="/api/v1", tags=["accounts"], responses={**ERROR_RESPONSES, **UNREADABLE_BODY_RESPONSE}
    )

    @api.get("/me", response_model=UserOut, summary="The user the token belongs to")
    def me(user: UserDep) -> UserOut:
        return account_store.user_view(user)

    @api.post(
        "/users",
        response_model=NewUserOut,
        status_code=201,
        summary="Add a user (admin); returns its token once",
        responses=CONFLICT_RESPONSE,
    )
    def add_user(body: UserIn, context: ContextDep, admin: AdminDep) -> NewUserOut:
        del admin
        with context.db.transaction() as session:
            return account_store.add_user(
                session,
                body.name,
                observatory=body.observatory,
                lon_deg=body.lon_deg,
                lat_deg=body.lat_deg,
                elevation_m=body.elevation_m,
                role=body.role,
            )

    @api.get("/instruments", response_model=list[InstrumentOut], summary="Registered instruments")
    def instruments(session: SessionDep) -> list[InstrumentOut]:
        return instrument_store.list_instruments(session)

    @api.post(
        "/instruments",
        response_model=InstrumentOut,
        status_code=201,
        summary="Add an instrument (admin)",
        responses=CONFLICT_RESPONSE,
    )
    def add_instrument(body: InstrumentIn, context: ContextDep, admin: AdminDep) -> InstrumentOut:
        del admin
        with context.db.transaction() as session:
            return instrument_store.add_instrument(session, **body.model_dump())

    @api.get("/observatories", response_model=list[ObservatoryOut], summary="Registered observatories")
    def observatories(session: SessionDep) -> list[ObservatoryOut]:
        return account_store.list_observatories(session)

    return api
