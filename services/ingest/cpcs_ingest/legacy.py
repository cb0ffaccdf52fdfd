"""The legacy CPCS upload, ``/followup/cgi/upload``: existing scripts work with only the host changed."""

from __future__ import annotations

import html
import math
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from cpcs import metrics
from cpcs.context import Context
from cpcs.db.models import Calibration, CalibrationRequest, Point
from cpcs.domain.accounts import authenticate
from cpcs.domain.observations import get_observation
from cpcs.domain.uploads import Registered
from cpcs.errors import InputError
from cpcs.messages import CalibrationParamsV1
from cpcs.schemas import ObservationStatus
from cpcs.science.selection import parse_force_filter
from cpcs.security import upload_form_limits
from cpcs.settings import origin_of
from cpcs.web import ERROR_RESPONSES, UPLOAD_RESPONSES, ContextDep, error_response, token_from_request
from cpcs_ingest.forms import parse_flag, parse_optional_float
from cpcs_ingest.service import IngestService, Upload


class LegacyUploadResult(BaseModel):
    """The JSON answer of a calibrated upload, as CPCS gave it."""

    mag: float
    mag_err: float = Field(description="Total error; -1 marks an upper limit (then mag is the limit)")
    ra: float
    dec: float
    zeropoint: float = Field(description="Instrumental minus catalogue, CPCS's sign")
    outlier_fraction: float
    scatter: float
    npoints: int
    followup_id: int | None = Field(
        description="The point's id (for delpoint), also when the upload was seen before; null for a dry run"
    )
    filter: str
    survey: str
    image_link: str = Field(description="The observation's status URL")
    observation_id: int
    limit_mag: float | None
    duplicate: bool = Field(
        False, description="You sent these bytes for this alert before: the answer is your existing point"
    )
    corrected: list[str] = Field(
        default_factory=list, description="Metadata of your existing observation this upload corrected"
    )


class LegacyStillCalibrating(BaseModel):
    observation_id: int
    status: ObservationStatus
    status_url: str
    followup_id: int | None = Field(None, description="The existing point, when the upload was seen before")
    duplicate: bool = False
    corrected: list[str] = Field(default_factory=list)


def legacy_result(
    context: Context, request: CalibrationRequest, base_url: str, registered: Registered
) -> dict[str, Any]:
    """The JSON CPCS answered an upload with (zeropoint is instrumental minus catalogue, as CPCS had it).

    An observation with a point answers with what its point shows (for a duplicate, the existing point).
    """
    with context.db.transaction() as session:
        observation = get_observation(session, request.observation_id)
        point = session.scalar(
            select(Point).where(Point.observation_id == observation.id, Point.deleted_at.is_(None))
        )
        calibration = (
            point.calibration if point is not None else session.get(Calibration, request.calibration_id)
        )
        assert calibration is not None
        target = calibration.result
        observation_link = f"{base_url}api/v1/observations/{request.observation_id}"
        upper = bool(target["is_upper_limit"])
        return {
            "mag": round(float(target["mag"]), 4),
            "mag_err": -1.0 if upper else round(float(target["err_total"]), 4),
            "ra": observation.alert.ra_deg,
            "dec": observation.alert.dec_deg,
            "zeropoint": round(-calibration.zp, 4),
            "outlier_fraction": round(calibration.outlier_fraction, 4),
            "scatter": round(calibration.scatter, 4),
            "npoints": calibration.n_stars,
            "followup_id": point.id if point is not None else None,
            "filter": calibration.band,
            "survey": calibration.survey,
            "image_link": observation_link,
            "observation_id": request.observation_id,
            "limit_mag": target.get("limit_mag"),
            "duplicate": registered.duplicate,
            "corrected": list(registered.corrected),
        }


def observation_page_url(base_url: str, observation_id: int) -> str:
    """The api's web page of the observation, with its calibration plots."""
    return f"{base_url}observations/{observation_id}"


def html_policy(base_url: str) -> str:
    """The legacy page loads nothing but the plot image, which the api serves (maybe on its own port)."""
    return (
        f"default-src 'none'; img-src 'self' {origin_of(base_url)}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def _html_page(result: dict[str, Any], dry_run: bool, page_url: str, plot: bool) -> str:
    """The HTML answer: the numbers, a link to the observation page and (``noPlot=0``) the fit's image."""
    mag_err = "-1 (upper limit)" if result["mag_err"] == -1 else f"{result['mag_err']:.3f}"
    rows = [
        ("Filter", f"{result['survey']} / {result['filter']}"),
        ("Magnitude", f"{result['mag']:.3f} +/- {mag_err} mag"),
        ("ZP", f"{result['zeropoint']:.3f} mag"),
        ("Scatter", f"{result['scatter']:.3f} mag"),
        ("Number of datapoints used for calibration", str(result["npoints"])),
        ("Outlier fraction", f"{result['outlier_fraction']:.2f}"),
        ("Followup id", str(result["followup_id"])),
        ("Dry run", str(dry_run)),
    ]
    if result["duplicate"]:
        seen = "yes: nothing was added, this is your existing point"
        if result["corrected"]:
            seen += f" (corrected: {', '.join(result['corrected'])})"
        rows.append(("Uploaded before", seen))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    link = html.escape(result["image_link"])
    page = html.escape(page_url)
    figure = ""
    if plot:
        alt = f"Catalogue against instrumental magnitude, {result['survey']}/{result['filter']}"
        figure = (
            f"<p><a href='{page}'><img id='calibration-plot' src='{page}/calibration.svg' width='640' "
            f"height='420' alt='{html.escape(alt)}'></a></p>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>CPCS calibration</title></head>"
        f"<body><h1>Result of calibration</h1><table>{body}</table>{figure}"
        f"<p><a id='observation-page' href='{page}'>Observation page with the calibration plots</a> · "
        f"<a href='{link}'>Calibration record (JSON)</a></p></body></html>"
    )


def router() -> APIRouter:
    api = APIRouter(prefix="/followup", tags=["legacy CPCS"], route_class=metrics.upload_route("legacy"))

    @api.post(
        "/cgi/upload",
        summary="Upload a SExtractor catalogue and wait for its calibration (CPCS compatible)",
        form_limits=upload_form_limits(max_files=2),
        responses={
            **ERROR_RESPONSES,
            **UPLOAD_RESPONSES,
            200: {"model": LegacyUploadResult, "content": {"text/html": {}}},
            202: {"model": LegacyStillCalibrating, "description": "Still calibrating: poll the status URL"},
        },
    )
    def cgi_upload(
        request: Request,
        context: ContextDep,
        EventID: Annotated[str, Form(description="The alert, e.g. ivo://Gaia16aye")],
        sexCat: Annotated[
            UploadFile | None, File(description="SExtractor ASCII_HEAD, FITS or FITS-LDAC catalogue")
        ] = None,
        fitsFile: Annotated[
            UploadFile | None, File(description="A calibrated CCD image (FITS, .fits.gz, .fz)")
        ] = None,
        hashtag: Annotated[str | None, Form()] = None,
        MJD: Annotated[
            str | None,
            Form(description="Mid-exposure MJD; required unless the header (LDAC, image) has the time"),
        ] = None,
        expTime: Annotated[str | None, Form(description="Exposure time, s")] = None,
        comment: Annotated[str | None, Form(max_length=2000)] = None,
        matchDist: Annotated[str | None, Form(description="Match radius, arcsec (1, 2, 4 or 6)")] = None,
        forceFilter: Annotated[str | None, Form(description="'no', 'SURVEY/BAND' or 'any/BAND'")] = None,
        dryRun: Annotated[str | None, Form()] = None,
        outputFormat: Annotated[str | None, Form(description="json or html")] = None,
        noPlot: Annotated[
            str | None, Form(description="0 (the default): the HTML answer shows the calibration plot")
        ] = None,
    ) -> Any:
        plot = not parse_flag(noPlot)  # the api draws it on demand; the page links the image
        output = (outputFormat or "html").strip().lower()
        if output not in ("json", "html"):
            raise InputError("outputFormat must be json or html.", code="invalid_output_format")
        with context.db.transaction() as session:
            user = authenticate(session, token_from_request(request, hashtag))
        match_radius = parse_optional_float(matchDist, "matchDist")
        params = CalibrationParamsV1(
            match_radius_arcsec=2.0 if match_radius is None else _check_radius(match_radius),
            force_filter=parse_force_filter(forceFilter),
            dry_run=parse_flag(dryRun),
        )
        if (sexCat is None) == (fitsFile is None):
            raise InputError(
                "Send exactly one file: sexCat (a source catalogue) or fitsFile (an image).",
                code="missing_file" if sexCat is None else "two_files",
            )
        upload_file = sexCat if sexCat is not None else fitsFile
        assert upload_file is not None
        service = IngestService(context)
        registered = service.accept(
            user,
            Upload(
                alert=EventID,
                stream=upload_file.file,
                filename=upload_file.filename,
                kind="catalogue" if sexCat is not None else "image",
                mjd=parse_optional_float(MJD, "MJD"),
                exptime_s=parse_optional_float(expTime, "expTime"),
                filter_declared=None,
                comment=comment,
                params=params,
            ),
        )
        final = service.wait_for(registered.request_id, context.settings.legacy_wait_s)
        base_url = context.settings.public_base_url
        status_url = f"{base_url}api/v1/observations/{registered.observation_id}"
        if final.status == "calibrated":
            result = legacy_result(context, final, base_url, registered)
            if output == "json":
                return JSONResponse(result)
            page_url = observation_page_url(base_url, registered.observation_id)
            return HTMLResponse(
                _html_page(result, params.dry_run, page_url, plot),
                headers={"Content-Security-Policy": html_policy(base_url)},
            )
        if final.status in ("failed", "error"):
            if final.status == "failed":
                return error_response(422, final.error_code or "failed", final.error_message or "failed")
            return error_response(
                503,
                final.error_code or "calibration_error",
                f"The calibration could not be completed ({final.error_message}); the upload is kept "
                f"and will be retried by an admin. Status: {status_url}",
                {"Retry-After": "60"},
            )
        return JSONResponse(
            status_code=202,
            content={
                "observation_id": registered.observation_id,
                "status": final.status,
                "status_url": status_url,
                "followup_id": registered.point_id,
                "duplicate": registered.duplicate,
                "corrected": list(registered.corrected),
            },
        )

    return api


def _check_radius(radius: float) -> float:
    if not (math.isfinite(radius) and 0 < radius <= 60):
        raise InputError(
            "matchDist is the match radius in arcsec: 1, 2, 4 or 6 (at most 60).", code="invalid_match_radius"
        )
    return radius
