"""REST v1: an instrument's trends (``cpcs.domain.trends``): zero point, limit, FWHM and sky against time
and airmass, nightly extinction and its changes, the learned colour terms, the limit to expect.

``GET /api/v1/instruments/{id}/trends[?exptime_s=300&exptime_s=900][&airmass=1.5]`` is public, as the
instruments and observatories are (equipment, and the calibrations behind the public light curves).
The instrument page (``/instruments/{id}``) draws the same.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cpcs.domain.trends import PLANNING_EXPTIMES_S, InstrumentTrendsOut, instrument_trends
from cpcs.errors import InputError
from cpcs.schemas import RecordId
from cpcs.web import ERROR_RESPONSES, SessionDep

#: Most exposure times one request may ask the expected limit for.
MAX_EXPTIMES = 20


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    @api.get(
        "/instruments/{instrument_id}/trends",
        response_model=InstrumentTrendsOut,
        tags=["accounts"],
        summary="An instrument's zero point, limit, FWHM and sky over time and airmass; extinction per "
        "night; learned colour terms; the expected limit for an exposure time",
    )
    def trends(
        session: SessionDep,
        instrument_id: RecordId,
        exptime_s: Annotated[
            list[float] | None,
            Query(description="Exposure times (s) to give the expected 5-sigma limit for; repeat for more"),
        ] = None,
        airmass: Annotated[
            float, Query(ge=1.0, le=10.0, description="Airmass of the expected limits (default 1)")
        ] = 1.0,
    ) -> InstrumentTrendsOut:
        times = list(exptime_s) if exptime_s else list(PLANNING_EXPTIMES_S)
        if len(times) > MAX_EXPTIMES or any(not (0 < t <= 86400) for t in times):
            raise InputError(
                f"exptime_s takes up to {MAX_EXPTIMES} exposure times, each above 0 and at most 86400 s.",
                code="invalid_exptime",
            )
        return instrument_trends(session, instrument_id, exptimes_s=times, airmass=airmass)

    return api
