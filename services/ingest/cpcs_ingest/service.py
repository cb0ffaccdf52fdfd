"""Accepting an upload: validate at the door, store the bytes, record the observation, queue the work."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import BinaryIO

from astropy.io import fits
from sqlalchemy.exc import IntegrityError

from cpcs.context import Context
from cpcs.db.models import Alert, CalibrationRequest, User
from cpcs.domain.alerts import find_alert, get_alert
from cpcs.domain.instruments import find_instrument, instrument_defaults
from cpcs.domain.observations import get_request
from cpcs.domain.revisions import check_exptime, check_mjd
from cpcs.domain.uploads import Registered, UploadFacts, register_upload
from cpcs.errors import InputError
from cpcs.formats.fits_image import FitsImageFacts, inspect_fits_image, looks_like_fits
from cpcs.formats.source_catalogue import SourceCatalogue, check_near_position, read_source_catalogue
from cpcs.messages import CalibrationParamsV1
from cpcs.schemas import MAX_RECORD_ID
from cpcs.science.imaging.header import InstrumentDefaults, standardise_header
from cpcs.storage import StagedFile
from cpcs_ingest.footprint import check_image_covers

log = logging.getLogger(__name__)

FINAL_STATUSES = ("calibrated", "failed", "error")


@dataclass(frozen=True)
class Upload:
    """The form fields of an upload (catalogue or image), from either interface."""

    alert: str
    stream: BinaryIO
    filename: str | None
    mjd: float | None
    exptime_s: float | None
    filter_declared: str | None
    comment: str | None
    params: CalibrationParamsV1
    kind: str | None = None  # "catalogue" or "image"; None = decide from the content
    instrument: str | None = None  # the observatory's instrument; None = its only one, if one


def resolve_alert(context: Context, reference: str) -> Alert:
    """An alert by id (digits) or by name (``ivo://Gaia16aye`` or ``Gaia16aye``)."""
    with context.db.transaction() as session:
        reference = (reference or "").strip()
        if reference.isascii() and reference.isdigit() and int(reference) <= MAX_RECORD_ID:
            return get_alert(session, int(reference))
        return find_alert(session, reference)


class IngestService:
    def __init__(self, context: Context):
        self.context = context

    def accept(self, user: User, upload: Upload) -> Registered:
        """Validate and store an upload; raises a 4xx ``CpcsError`` and keeps nothing if it is bad."""
        mjd = check_mjd(upload.mjd)
        exptime_s = check_exptime(upload.exptime_s)
        alert = resolve_alert(self.context, upload.alert)
        with self.context.db.transaction() as session:
            instrument = find_instrument(session, user.observatory_id, upload.instrument)
            defaults = instrument_defaults(instrument)
            instrument_id = instrument.id if instrument is not None else None
        settings = self.context.settings
        with self.context.files.staged_upload(upload.stream, max_bytes=settings.max_upload_bytes) as staged:
            facts = self._check(staged, upload, alert, mjd, exptime_s, defaults)
            stored = self.context.files.keep(staged)
        facts = dataclasses.replace(
            facts, stored_path=self.context.files.relative(stored), instrument_id=instrument_id
        )
        registered = self._register(user, alert, facts, upload.params)
        log.info(
            "accepted %s (%s) for %s%s",
            facts.kind,
            facts.source_summary.get("format"),
            alert.name,
            " (seen before)" if registered.duplicate else "",
            extra={"observation_id": registered.observation_id},
        )
        return registered

    def _check(
        self,
        staged: StagedFile,
        upload: Upload,
        alert: Alert,
        mjd: float | None,
        exptime_s: float | None,
        defaults: InstrumentDefaults | None,
    ) -> UploadFacts:
        with staged.path.open("rb") as handle:
            head = handle.read(512)
        kind = upload.kind
        image: FitsImageFacts | None = None
        if kind != "catalogue" and looks_like_fits(head):
            try:
                image = inspect_fits_image(staged.path, max_pixels=self.context.settings.max_image_pixels)
                kind = "image"
            except InputError as error:
                if error.code != "no_image_in_fits" or kind == "image":
                    raise
                kind = "catalogue"
        elif kind == "image":
            inspect_fits_image(staged.path, max_pixels=self.context.settings.max_image_pixels)
        if image is not None:
            return self._image_facts(staged, upload, alert, image, mjd, exptime_s, defaults)
        return self._catalogue_facts(staged, upload, alert, mjd, exptime_s)

    def _catalogue_facts(
        self, staged: StagedFile, upload: Upload, alert: Alert, mjd: float | None, exptime_s: float | None
    ) -> UploadFacts:
        catalogue = read_source_catalogue(
            staged.path,  # read in chunks while the limits are checked
            filename=upload.filename,
            magnitude_column=upload.params.magnitude_column,
            aperture_index=upload.params.aperture_index,
        )
        check_near_position(catalogue, alert.ra_deg, alert.dec_deg)
        # The form wins; an LDAC catalogue's image header fills what the form left out.
        from_header = standardise_header(fits.Header(list(catalogue.header.items())))
        mjd = mjd if mjd is not None else check_mjd(from_header.mjd_mid)
        if mjd is None:
            # A point without a time cannot be placed on a light curve (nor sent to SkyPortal).
            raise InputError(
                "The catalogue has no time: send the mid-exposure MJD in the form (MJD, or mjd in "
                "/api/v1/uploads), or upload a FITS-LDAC catalogue whose image header has DATE-OBS, "
                "MJD-OBS or JD.",
                code="missing_time",
            )
        return UploadFacts(
            sha256=staged.sha256,
            size_bytes=staged.size_bytes,
            kind="catalogue",
            filename=_safe_filename(upload.filename),
            stored_path="",
            mjd=mjd,
            exptime_s=exptime_s if exptime_s is not None else check_exptime(from_header.exptime_s),
            filter_declared=upload.filter_declared or from_header.filter_name or None,
            comment=upload.comment,
            source_summary=_summary(catalogue),
        )

    def _image_facts(
        self,
        staged: StagedFile,
        upload: Upload,
        alert: Alert,
        image: FitsImageFacts,
        mjd: float | None,
        exptime_s: float | None,
        defaults: InstrumentDefaults | None,
    ) -> UploadFacts:
        header = standardise_header(image.header, instrument=defaults)
        mjd = mjd if mjd is not None else check_mjd(header.mjd_mid)
        exptime_s = exptime_s if exptime_s is not None else check_exptime(header.exptime_s)
        if mjd is None:
            raise InputError(
                "The image has no usable time: send MJD (mid-exposure) in the form, or a DATE-OBS, "
                "MJD-OBS or JD card in the header.",
                code="missing_time",
            )
        if exptime_s is None:
            raise InputError(
                "The image has no exposure time: send expTime in the form, or an EXPTIME card.",
                code="missing_exposure",
            )
        check_image_covers(header, image.shape, alert.ra_deg, alert.dec_deg)
        return UploadFacts(
            sha256=staged.sha256,
            size_bytes=staged.size_bytes,
            kind="image",
            filename=_safe_filename(upload.filename),
            stored_path="",
            mjd=mjd,
            exptime_s=exptime_s,
            filter_declared=upload.filter_declared or header.filter_name or None,
            comment=upload.comment,
            source_summary={
                "format": f"fits_image{'_' + image.compression if image.compression else ''}",
                "hdu": image.hdu_index,
                "shape": list(image.shape),
                "bitpix": image.bitpix,
                "has_wcs": header.wcs is not None,
            },
        )

    def _register(
        self, user: User, alert: Alert, facts: UploadFacts, params: CalibrationParamsV1
    ) -> Registered:
        ttl = dt.timedelta(hours=self.context.settings.dry_run_ttl_hours)
        for attempt in (1, 2):
            try:
                with self.context.db.transaction() as session:
                    registered = register_upload(
                        session, user=user, alert=alert, facts=facts, params=params, dry_run_ttl=ttl
                    )
                break
            except IntegrityError:
                # The same bytes arrived twice at once: the other request's rows exist now.
                if attempt == 2:
                    raise
        self.context.committed()
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
