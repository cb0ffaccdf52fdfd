"""REST v1 uploads: ``POST /api/v1/uploads`` answers 202 with the observation's status URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from cpcs import metrics
from cpcs.messages import CalibrationParamsV1
from cpcs.schemas import UploadAccepted
from cpcs.science.selection import parse_force_filter
from cpcs.security import upload_form_limits
from cpcs.web import ERROR_RESPONSES, UPLOAD_RESPONSES, ContextDep, UserDep
from cpcs_ingest.service import IngestService, Upload


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["uploads"], route_class=metrics.upload_route("v1"))

    @api.post(
        "/uploads",
        status_code=202,
        response_model=UploadAccepted,
        summary="Upload a source catalogue for an alert; calibration runs in the background",
        responses={**ERROR_RESPONSES, **UPLOAD_RESPONSES},
        form_limits=upload_form_limits(max_files=1),
    )
    def upload(
        response: Response,
        context: ContextDep,
        user: UserDep,
        alert: Annotated[str, Form(description="Alert id or name (ivo://Gaia16aye)")],
        file: Annotated[
            UploadFile,
            File(
                description="A source catalogue (SExtractor ASCII_HEAD, FITS table or LDAC) or a FITS image"
            ),
        ],
        mjd: Annotated[
            float | None,
            Form(description="Mid-exposure MJD; required unless the header (LDAC, image) has the time"),
        ] = None,
        exptime_s: Annotated[float | None, Form(ge=0)] = None,
        filter: Annotated[str | None, Form(max_length=40, description="Filter used (V, r, Clear...)")] = None,
        comment: Annotated[str | None, Form(max_length=2000)] = None,
        match_radius_arcsec: Annotated[float, Form(gt=0, le=60)] = 2.0,
        force_filter: Annotated[str | None, Form(description="'SURVEY/BAND' or 'any/BAND'")] = None,
        dry_run: Annotated[bool, Form()] = False,
        magnitude_column: Annotated[str | None, Form(max_length=40)] = None,
        aperture_index: Annotated[int, Form(ge=0, le=50)] = 0,
        instrument: Annotated[
            str | None,
            Form(max_length=200, description="Your observatory's instrument (default: its only one)"),
        ] = None,
    ) -> UploadAccepted:
        params = CalibrationParamsV1(
            match_radius_arcsec=match_radius_arcsec,
            force_filter=parse_force_filter(force_filter),
            dry_run=dry_run,
            magnitude_column=magnitude_column or None,
            aperture_index=aperture_index,
        )
        registered = IngestService(context).accept(
            user,
            Upload(
                alert=alert,
                stream=file.file,
                filename=file.filename,
                mjd=mjd,
                exptime_s=exptime_s,
                filter_declared=filter,
                comment=comment,
                params=params,
                instrument=instrument or None,
            ),
        )
        status_url = f"{context.settings.public_base_url}api/v1/observations/{registered.observation_id}"
        response.headers["Location"] = status_url
        return UploadAccepted(
            observation_id=registered.observation_id,
            status=registered.status,
            status_url=status_url,
            duplicate=registered.duplicate,
            calibration_request_id=registered.request_id,
            point_id=registered.point_id,
            corrected=list(registered.corrected),
        )

    return api
