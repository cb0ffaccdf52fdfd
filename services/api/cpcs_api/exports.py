"""REST v1: an alert's light curve as a file, and the filter registry.

``GET /api/v1/alerts/{alert_id}/export?format=...`` answers one of
``json | csv | ecsv | votable | legacy | skyportal-mag | skyportal-flux`` (see
``cpcs.lightcurve.exports``) with its media type and a download file name; it needs a token, as every
download of data. The SkyPortal formats need the destination's ``instrument_id`` and take its
``obj_id``, ``origin`` and ``group_ids``; points SkyPortal cannot take are listed in the
``X-CPCS-Skipped-Points`` header (``<point id>:<reason>,...``), the body being exactly what SkyPortal's
``POST /api/photometry`` accepts.

``GET /api/v1/filters`` is the filter registry: standard bands with their sncosmo names, the bands of
the reference surveys as exports name them, and the local filter names understood.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from cpcs.domain import alerts as alert_store
from cpcs.domain.points import light_curve_for_export
from cpcs.errors import InputError
from cpcs.lightcurve.exports import FORMATS, SkyPortalOptions, render
from cpcs.schemas import RecordId
from cpcs.science.bands import (
    STANDARD_BANDS,
    SURVEY_BANDPASSES,
    export_band,
    filter_aliases,
    standard_band,
)
from cpcs.web import ERROR_RESPONSES, ContextDep, SessionDep, UserDep
from cpcs_api import community

ExportFormatName = Literal[
    "json", "csv", "ecsv", "votable", "legacy", "skyportal-mag", "skyportal-flux", "aavso"
]

_FORMAT_HELP = "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()) + (
    "; aavso: your own points in the AAVSO Extended File Format (needs your AAVSO observer code)"
)


class StandardBandOut(BaseModel):
    name: str
    wavelength_nm: float
    system: str
    sncosmo: str | None = Field(description="sncosmo bandpass name; none for Clear")
    magsys: str = Field(description="sncosmo magnitude system name")


class SurveyBandOut(BaseModel):
    survey: str
    band: str
    sncosmo: str | None
    system: str | None
    magsys: str | None
    label: str


class FilterRegistryOut(BaseModel):
    standard_bands: list[StandardBandOut]
    survey_bands: list[SurveyBandOut]
    aliases: dict[str, str] = Field(description="Local filter names (lower case) and the band they stand for")
    resolved: StandardBandOut | None = Field(None, description="The band the `name` asked about stands for")


def _standard_out(name: str) -> StandardBandOut:
    band = STANDARD_BANDS[name]
    return StandardBandOut(
        name=band.name,
        wavelength_nm=band.wavelength_nm,
        system=band.system,
        sncosmo=band.sncosmo,
        magsys=band.magsys,
    )


def _survey_band_out(survey: str, band: str) -> SurveyBandOut:
    named = export_band(survey, band)
    return SurveyBandOut(
        survey=named.survey,
        band=named.band,
        sncosmo=named.sncosmo,
        system=named.system,
        magsys=named.magsys,
        label=named.label,
    )


def _skyportal_options(
    fmt: str, instrument_id: int | None, obj_id: str | None, origin: str, group_ids: list[int] | None
) -> SkyPortalOptions | None:
    """The SkyPortal formats' options (they need the destination's instrument); none for the others."""
    if not fmt.startswith("skyportal"):
        return None
    if instrument_id is None:
        raise InputError(
            "SkyPortal exports need instrument_id, the id of the instrument in the destination "
            "SkyPortal (its filters must include the exported sncosmo bandpasses).",
            code="missing_instrument_id",
        )
    return SkyPortalOptions(instrument_id, obj_id, origin, group_ids)


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    @api.get(
        "/alerts/{alert_id}/export",
        tags=["alerts"],
        summary="An alert's light curve as a file (JSON, CSV, ECSV, VOTable, legacy, SkyPortal, AAVSO)",
        response_class=Response,
        responses={
            200: {
                "description": "The file; `Content-Disposition` names it",
                "content": {
                    "application/json": {"schema": {"type": "object", "additionalProperties": True}},
                    "text/csv": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}},
                    "application/x-votable+xml": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    def export(
        context: ContextDep,
        session: SessionDep,
        alert_id: RecordId,
        user: UserDep,
        format: Annotated[ExportFormatName, Query(description=_FORMAT_HELP)] = "json",
        instrument_id: Annotated[
            int | None, Query(ge=1, description="SkyPortal formats: the destination's instrument id")
        ] = None,
        obj_id: Annotated[
            str | None,
            Query(
                max_length=100,
                pattern=r"^[A-Za-z0-9_.:+-]+$",
                description="SkyPortal formats: the object id there (default: from the alert name)",
            ),
        ] = None,
        origin: Annotated[
            str, Query(min_length=1, max_length=100, description="SkyPortal formats: provenance")
        ] = "cpcs",
        group_ids: Annotated[
            list[int] | None, Query(description="SkyPortal formats: groups to share the points with")
        ] = None,
    ) -> Response:
        if format == "aavso":
            return community.aavso_export(session, alert_id, user, context.settings.public_base_url)
        alert = alert_store.alert_view(session, alert_store.get_alert(session, alert_id))
        points, details = light_curve_for_export(session, alert_id)
        rendered = render(
            format,
            alert,
            points,
            details,
            base_url=context.settings.public_base_url,
            skyportal=_skyportal_options(format, instrument_id, obj_id, origin, group_ids),
        )
        disposition = f'attachment; filename="{rendered.filename}"'
        return Response(
            content=rendered.body,
            media_type=rendered.media_type,
            headers={"Content-Disposition": disposition, **rendered.headers},
        )

    @api.get(
        "/filters",
        response_model=FilterRegistryOut,
        tags=["filters"],
        summary="The filter registry: standard bands, survey bands as exported, local filter names",
    )
    def filters(
        name: Annotated[str | None, Query(max_length=40, description="A filter name to resolve")] = None,
    ) -> FilterRegistryOut:
        resolved = standard_band(name) if name else None
        if name and resolved is None:
            raise InputError(f"Unknown filter name {name!r}.", code="unknown_filter")
        return FilterRegistryOut(
            standard_bands=[_standard_out(b) for b in STANDARD_BANDS],
            survey_bands=[_survey_band_out(survey, band) for survey, band in SURVEY_BANDPASSES],
            aliases=filter_aliases(),
            resolved=_standard_out(resolved.name) if resolved is not None else None,
        )

    return api
