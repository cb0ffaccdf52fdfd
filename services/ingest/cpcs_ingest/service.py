"""Accepting an upload: validate at the door, store the bytes, record the observation, queue the work."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from cpcs.context import Context
from cpcs.db.models import Alert, CalibrationRequest, User
from cpcs.domain.alerts import find_alert, get_alert
from cpcs.domain.observations import Registered, UploadFacts, get_request, register_catalogue
from cpcs.errors import InputError
from cpcs.formats.source_catalogue import SourceCatalogue, check_near_position, read_source_catalogue
from cpcs.headers import header_facts
from cpcs.messages import CalibrationParamsV1

log = logging.getLogger(__name__)

FINAL_STATUSES = ("calibrated", "failed", "error")
JD_OFFSET = 2400000.5


@dataclass(frozen=True)
class CatalogueUpload:
    """The form fields of a catalogue upload, from either interface."""

    alert: str
    data: bytes
    filename: str | None
    mjd: float | None
    exptime_s: float | None
    filter_declared: str | None
    comment: str | None
    params: CalibrationParamsV1


def check_mjd(mjd: float | None) -> float | None:
    if mjd is None:
        return None
    if not math.isfinite(mjd):
        raise InputError("MJD must be a finite number.", code="invalid_mjd")
    if mjd > JD_OFFSET:
        raise InputError(
            f"MJD {mjd} looks like a Julian Date: send MJD = JD - 2400000.5 ({mjd - JD_OFFSET:.6f}).",
            code="invalid_mjd",
        )
    if mjd < 0:
        raise InputError("MJD cannot be negative.", code="invalid_mjd")
    return mjd


def check_exptime(exptime_s: float | None) -> float | None:
    if exptime_s is not None and not (math.isfinite(exptime_s) and exptime_s >= 0):
        raise InputError(
            "The exposure time must be a non-negative number of seconds.", code="invalid_exptime"
        )
    return exptime_s


def resolve_alert(context: Context, reference: str) -> Alert:
    """An alert by id (digits) or by name (``ivo://Gaia16aye`` or ``Gaia16aye``)."""
    with context.db.transaction() as session:
        reference = (reference or "").strip()
        if reference.isdigit():
            return get_alert(session, int(reference))
        return find_alert(session, reference)


class IngestService:
    def __init__(self, context: Context):
        self.context = context

    def accept_catalogue(self, user: User, upload: CatalogueUpload) -> Registered:
        """Validate and store a catalogue upload; raises a 4xx ``CpcsError`` and stores nothing if bad."""
        if len(upload.data) > self.context.settings.max_upload_bytes:
            raise InputError(
                f"The file is larger than the {self.context.settings.max_upload_bytes} byte limit.",
                code="file_too_large",
                http_status=413,
            )
        mjd = check_mjd(upload.mjd)
        exptime_s = check_exptime(upload.exptime_s)
        alert = resolve_alert(self.context, upload.alert)
        catalogue = read_source_catalogue(
            upload.data,
            filename=upload.filename,
            magnitude_column=upload.params.magnitude_column,
            aperture_index=upload.params.aperture_index,
        )
        check_near_position(catalogue, alert.ra_deg, alert.dec_deg)
        # The form wins; an LDAC catalogue's image header fills what the form left out.
        from_header = header_facts(catalogue.header)
        mjd = mjd if mjd is not None else check_mjd(from_header.mjd_mid)
        exptime_s = exptime_s if exptime_s is not None else check_exptime(from_header.exptime_s)
        filter_declared = upload.filter_declared or from_header.filter_name
        sha256, path = self.context.files.put(upload.data)
        facts = UploadFacts(
            sha256=sha256,
            size_bytes=len(upload.data),
            kind="catalogue",
            filename=_safe_filename(upload.filename),
            stored_path=self.context.files.relative(path),
            mjd=mjd,
            exptime_s=exptime_s,
            filter_declared=filter_declared or None,
            comment=upload.comment,
            source_summary=_summary(catalogue),
        )
        ttl = dt.timedelta(hours=self.context.settings.dry_run_ttl_hours)
        for attempt in (1, 2):
            try:
                with self.context.db.transaction() as session:
                    registered = register_catalogue(
                        session, user=user, alert=alert, facts=facts, params=upload.params, dry_run_ttl=ttl
                    )
                break
            except IntegrityError:
                # The same bytes arrived twice at once: the other request's rows exist now.
                if attempt == 2:
                    raise
        self.context.committed()
        log.info(
            "accepted %s catalogue of %d sources for %s%s",
            catalogue.format,
            len(catalogue.mag),
            alert.name,
            " (seen before)" if registered.duplicate else "",
            extra={"observation_id": registered.observation_id},
        )
        return registered

    def wait_for(self, request_id: int, timeout_s: float) -> CalibrationRequest:
        """Poll until a calibration request is final or the wait runs out (the legacy endpoint waits)."""
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            with self.context.db.transaction() as session:
                request = get_request(session, request_id)
                if request.status in FINAL_STATUSES or time.monotonic() >= deadline:
                    return request
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)


def _safe_filename(filename: str | None) -> str | None:
    """Keep only the last path component and printable characters (for display, never for paths)."""
    if not filename:
        return None
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name or None


def _summary(catalogue: SourceCatalogue) -> dict[str, object]:
    return {
        "format": catalogue.format,
        "magnitude_column": catalogue.magnitude_column,
        "n_rows": catalogue.n_rows,
        "n_usable": len(catalogue.mag),
        "n_rejected": catalogue.n_rejected,
    }
