"""Sending files to a CPCS server: what to send with each file, the upload with retries, the wait.

What each file is sent with
---------------------------
A **source catalogue** (SExtractor ASCII, FITS table, LDAC) carries no observing time of its own
(LDAC aside), so the image it was extracted from is looked for beside it, with the same stem
(``frame.cat`` -> ``frame.fits``, ``frame.fts``, ``frame.fit``, ``frame.fits.gz``, ``frame.fits.fz``):
its header gives the mid-exposure MJD (``DATE-OBS``/``MJD-OBS``/``JD``/``HJD`` + ``EXPTIME``/2), the
exposure time and the filter, read by :func:`cpcs.science.imaging.header.standardise_header` exactly
as the server reads uploaded images. Values given on the command line win over the header. A
catalogue for which no time can be found (no ``--mjd``, no image beside it with a time card, no time
in an LDAC image header) is not sent: the server would refuse it (``missing_time``), since a point
needs a time.

A **FITS image** is uploaded as it is: the server reads its header itself (only values given on the
command line are sent with it).

Retries
-------
Connection failures, timeouts, 429 and 5xx answers are retried with exponential back-off (the
server's ``Retry-After`` is honoured, within the cap). Resending an upload is safe: the server
recognises your own upload of the same bytes, alert and parameters and answers with the existing
observation (``seen before``); a resend with a corrected time, exposure or filter corrects that
observation (``corrected``). Any other 4xx is final and reported with the server's ``error`` code
and ``message``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from cpcs.errors import InputError
from cpcs.formats.fits_image import inspect_fits_image, looks_like_fits
from cpcs.formats.source_catalogue import read_source_catalogue
from cpcs.science.imaging.header import standardise_header

FileKind = Literal["catalogue", "image"]

#: Extensions of the image a catalogue was extracted from, tried in this order.
SIBLING_SUFFIXES = (".fits", ".fts", ".fit", ".fits.gz", ".fits.fz", ".FITS", ".FTS", ".FIT")
#: Statuses after which an observation does not change any more.
FINAL_STATUSES = ("calibrated", "failed", "error")
#: Answers worth trying again.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Images of any size are fine here: the server applies its own limit.
_ANY_SIZE = 1 << 62


class UploadError(Exception):
    """A final failure for one file: the server refused it (4xx) or retries ran out."""

    def __init__(self, message: str, *, code: str = "upload_failed", status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass(frozen=True)
class HeaderFacts:
    """Observation facts read from a FITS header."""

    mjd: float | None
    exptime_s: float | None
    filter_name: str | None
    source: Path


@dataclass(frozen=True)
class PlannedUpload:
    """One file and the form values that go with it."""

    path: Path
    kind: FileKind
    mjd: float | None
    exptime_s: float | None
    filter_name: str | None
    header_from: Path | None = None  # the FITS file whose header gave values, if any
    notes: tuple[str, ...] = ()
    #: Why the file is not sent at all (the server would refuse it), with the error code.
    refusal: tuple[str, str] | None = None

    def form(self) -> dict[str, str]:
        values = {"mjd": self.mjd, "exptime_s": self.exptime_s, "filter": self.filter_name}
        return {key: _form_value(value) for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class UploadOptions:
    """What is sent with every file of one command."""

    alert: str
    match_radius_arcsec: float | None = None
    force_filter: str | None = None
    dry_run: bool = False
    comment: str | None = None

    def form(self) -> dict[str, str]:
        values: dict[str, Any] = {
            "alert": self.alert,
            "match_radius_arcsec": self.match_radius_arcsec,
            "force_filter": self.force_filter,
            "comment": self.comment,
            "dry_run": "true" if self.dry_run else "false",
        }
        return {key: _form_value(value) for key, value in values.items() if value is not None}


@dataclass
class UploadOutcome:
    """What happened to one file: accepted (then waited for), or refused with an error."""

    plan: PlannedUpload
    observation_id: int | None = None
    status_url: str | None = None
    #: The calibration request that follows the upload (for a file sent again, the run it caused).
    request_url: str | None = None
    duplicate: bool = False
    corrected: list[str] = field(default_factory=list)
    status: str = "pending"
    observation: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "calibrated"

    def summary(self) -> dict[str, Any]:
        """A flat record of the outcome (one JSON line of ``--json``)."""
        result = self._result()
        return {
            "file": str(self.plan.path),
            "kind": self.plan.kind,
            "status": self.status,
            "observation_id": self.observation_id,
            "duplicate": self.duplicate,
            "corrected": self.corrected,
            "mjd": self.observation.get("mjd", self.plan.mjd),
            "exptime_s": self.observation.get("exptime_s", self.plan.exptime_s),
            "filter": self.observation.get("filter_declared", self.plan.filter_name),
            "header_from": str(self.plan.header_from) if self.plan.header_from else None,
            **result,
            "error_code": self.error_code or self.observation.get("error_code"),
            "error_message": self.error_message or self.observation.get("error_message"),
            "status_url": self.status_url,
        }

    def _result(self) -> dict[str, Any]:
        point = self.observation.get("point") or {}
        calibration = self.observation.get("calibration") or {}
        target = calibration.get("target") or {}
        if point:
            return {
                "survey": point["survey"],
                "band": point["band"],
                "mag": point["mag"],
                "mag_err": point["mag_err_total"],
                "is_upper_limit": point["is_upper_limit"],
                "limit_mag": point["limit_mag"],
                "point_id": point["id"],
            }
        if calibration:  # a dry run: calibrated, but no point
            return {
                "survey": calibration["survey"],
                "band": calibration["band"],
                "mag": target.get("mag"),
                "mag_err": target.get("err_total"),
                "is_upper_limit": target.get("is_upper_limit"),
                "limit_mag": target.get("limit_mag"),
                "point_id": None,
            }
        keys = ("survey", "band", "mag", "mag_err", "is_upper_limit", "limit_mag", "point_id")
        return dict.fromkeys(keys)


def _form_value(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# --- what to send -------------------------------------------------------------------------------


def expand_inputs(items: Iterable[str]) -> list[Path]:
    """Files named or matched by glob patterns (``**`` allowed), in order, each once.

    Raises ``UploadError`` (``no_such_file``) for an item that is neither a file nor matches one.
    """
    found: dict[Path, None] = {}
    for item in items:
        path = Path(item).expanduser()
        if path.is_file():
            found.setdefault(path, None)
            continue
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not matches:
            raise UploadError(f"{item}: no such file, and no file matches it.", code="no_such_file")
        for match in matches:
            found.setdefault(match, None)
    return list(found)


def file_kind(path: Path) -> FileKind:
    """``image`` for a FITS file holding a 2-D image, else ``catalogue`` (ASCII, FITS table, LDAC)."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if not looks_like_fits(head):
        return "catalogue"
    try:
        inspect_fits_image(path, max_pixels=_ANY_SIZE)
    except InputError as error:
        if error.code == "no_image_in_fits":
            return "catalogue"
        raise UploadError(f"{path}: {error.message}", code=error.code) from None
    return "image"


def sibling_image(catalogue: Path) -> Path | None:
    """The FITS image beside a catalogue with the same stem, if there is one."""
    stem = catalogue.name.split(".", 1)[0] if catalogue.name.count(".") > 1 else catalogue.stem
    for suffix in SIBLING_SUFFIXES:
        for candidate in (catalogue.with_name(catalogue.stem + suffix), catalogue.with_name(stem + suffix)):
            if candidate != catalogue and candidate.is_file():
                return candidate
    return None


def read_header_facts(path: Path) -> HeaderFacts:
    """MJD (mid-exposure), exposure time and filter from a FITS file's image header (else its first)."""
    header: fits.Header | None
    try:
        header = inspect_fits_image(path, max_pixels=_ANY_SIZE).header
    except InputError:
        header = None
    if header is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                header = fits.getheader(path, 0)
        except Exception as exc:
            raise UploadError(
                f"{path}: its FITS header cannot be read ({exc}).", code="unreadable_header"
            ) from None
    facts = standardise_header(header)
    return HeaderFacts(facts.mjd_mid, facts.exptime_s, facts.filter_name, path)


def plan_upload(
    path: Path,
    *,
    mjd: float | None = None,
    exptime_s: float | None = None,
    filter_name: str | None = None,
    use_sibling: bool = True,
) -> PlannedUpload:
    """The file's kind and its form values: the command line's, else the sibling image header's."""
    kind = file_kind(path)
    if kind == "image":
        return PlannedUpload(path, kind, mjd, exptime_s, filter_name)
    image = sibling_image(path) if use_sibling else None
    facts = read_header_facts(image) if image is not None else None
    plan = PlannedUpload(
        path,
        kind,
        mjd if mjd is not None or facts is None else facts.mjd,
        exptime_s if exptime_s is not None or facts is None else facts.exptime_s,
        filter_name if filter_name is not None or facts is None else facts.filter_name,
        header_from=image,
    )
    if plan.mjd is not None:
        return plan
    if _time_in_own_header(path):
        return dataclasses.replace(plan, notes=("the time comes from its LDAC image header",))
    where = (
        f"{image.name} beside it has no usable time card"
        if image is not None
        else "no image with the same stem beside it"
        if use_sibling
        else "--no-sibling"
    )
    return dataclasses.replace(
        plan,
        refusal=(
            "missing_time",
            f"no time for this catalogue ({where}, no --mjd): give --mjd, or put the image it was "
            "extracted from beside it (frame.cat -> frame.fits); a point needs a time.",
        ),
    )


def _time_in_own_header(path: Path) -> bool:
    """An LDAC catalogue's image header has a time (a file the server would refuse anyway: yes, send
    it, so that the server says what is wrong with it)."""
    with path.open("rb") as handle:
        if not looks_like_fits(handle.read(512)):
            return False
    try:
        catalogue = read_source_catalogue(path.read_bytes(), filename=path.name)
    except InputError:
        return True
    return standardise_header(fits.Header(list(catalogue.header.items()))).mjd_mid is not None


# --- talking to the server ----------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        wanted = self.base_s * 2 ** (attempt - 1)
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                wanted = max(wanted, float(retry_after))
        return min(wanted, self.cap_s)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """The server's error code and message (``{"error", "message"}``), or a plain description."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body.get("error") or "http_error"), body["message"]
    text = response.text.strip()[:300] or response.reason_phrase
    return f"http_{response.status_code}", text


class CpcsUploader:
    """Uploads files to ``{server}/api/v1/uploads`` and follows their status URLs."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str, int, str, float], None] | None = None,
    ):
        self.server = server.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.on_retry = on_retry
        self.http = httpx.Client(
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
            follow_redirects=True,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> CpcsUploader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, what: str, make: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
        """Send until an answer that is not worth retrying; returns it and the number of tries."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = make()
            except httpx.TransportError as exc:
                problem, retry_after = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response, attempt
                code, message = _error_of(response)
                problem, retry_after = (
                    f"{response.status_code} {code}: {message}",
                    response.headers.get("retry-after"),
                )
                if attempt >= self.retry.attempts:
                    raise UploadError(
                        f"{what}: gave up after {attempt} tries: {message}",
                        code=code,
                        status=response.status_code,
                    )
            if attempt >= self.retry.attempts:
                raise UploadError(f"{what}: gave up after {attempt} tries: {problem}", code="unreachable")
            delay = self.retry.delay(attempt, retry_after)
            if self.on_retry is not None:
                self.on_retry(what, attempt, problem, delay)
            self.sleep(delay)

    def upload(self, plan: PlannedUpload, options: UploadOptions) -> UploadOutcome:
        """Send one file; a refusal or exhausted retries give an outcome with status ``rejected``."""
        outcome = UploadOutcome(plan)
        if plan.refusal is not None:
            outcome.status = "rejected"
            outcome.error_code, outcome.error_message = plan.refusal
            return outcome
        data = {**options.form(), **plan.form()}

        def post() -> httpx.Response:
            with plan.path.open("rb") as handle:
                files = {"file": (plan.path.name, handle, "application/octet-stream")}
                return self.http.post(f"{self.server}/api/v1/uploads", data=data, files=files)

        try:
            response, outcome.attempts = self._send(plan.path.name, post)
        except UploadError as error:
            outcome.status, outcome.error_code, outcome.error_message = "rejected", error.code, error.message
            return outcome
        if response.status_code >= 400:
            code, message = _error_of(response)
            outcome.status, outcome.error_code, outcome.error_message = "rejected", code, message
            return outcome
        body = response.json()
        outcome.observation_id = int(body["observation_id"])
        outcome.status_url = str(body["status_url"])
        if body.get("calibration_request_id") is not None:
            outcome.request_url = (
                f"{self.server}/api/v1/calibration-requests/{body['calibration_request_id']}"
            )
        outcome.duplicate = bool(body.get("duplicate", False))
        outcome.corrected = [str(name) for name in body.get("corrected") or []]
        outcome.status = str(body.get("status", "received"))
        return outcome

    def observation(self, url: str) -> dict[str, Any]:
        response, _ = self._send(url, lambda: self.http.get(url))
        if response.status_code >= 400:
            code, message = _error_of(response)
            raise UploadError(f"{url}: {message}", code=code, status=response.status_code)
        body: dict[str, Any] = response.json()
        return body

    def wait(
        self,
        outcomes: Sequence[UploadOutcome],
        *,
        timeout_s: float = 300.0,
        poll_s: float = 0.25,
        on_final: Callable[[UploadOutcome], None] | None = None,
    ) -> None:
        """Poll every accepted upload until it is final or ``timeout_s`` passes (then ``timed_out``).

        The upload's calibration request is followed first (a corrected file sent again is
        recalibrated while its observation stays ``calibrated``), then its observation.
        """
        pending = [o for o in outcomes if o.status_url is not None]
        deadline = time.monotonic() + timeout_s
        delay = poll_s
        while pending:
            still = []
            for outcome in pending:
                assert outcome.status_url is not None
                try:
                    if outcome.request_url is not None:
                        request = self.observation(outcome.request_url)
                        if request.get("status") not in FINAL_STATUSES:
                            still.append(outcome)
                            continue
                        outcome.request_url = None
                    outcome.observation = self.observation(outcome.status_url)
                except UploadError as error:
                    outcome.status, outcome.error_code, outcome.error_message = (
                        "error",
                        error.code,
                        error.message,
                    )
                    if on_final is not None:
                        on_final(outcome)
                    continue
                outcome.status = str(outcome.observation.get("status", "received"))
                if outcome.status in FINAL_STATUSES:
                    if on_final is not None:
                        on_final(outcome)
                else:
                    still.append(outcome)
            pending = still
            if not pending:
                return
            if time.monotonic() >= deadline:
                for outcome in pending:
                    outcome.status = "timed_out"
                    if on_final is not None:
                        on_final(outcome)
                return
            self.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 5.0)


# --- showing results ----------------------------------------------------------------------------


def format_magnitude(record: dict[str, Any]) -> str:
    """``16.234 ± 0.012``, ``> 19.41`` for an upper limit, ``-`` when there is no result."""
    mag = record.get("mag")
    if record.get("is_upper_limit"):
        limit = record.get("limit_mag")
        value = limit if isinstance(limit, (int, float)) and math.isfinite(limit) else mag
        return f"> {value:.2f}" if isinstance(value, (int, float)) else "> ?"
    if not isinstance(mag, (int, float)):
        return "-"
    err = record.get("mag_err")
    return f"{mag:.3f} ± {err:.3f}" if isinstance(err, (int, float)) else f"{mag:.3f}"


def _seen_before(record: dict[str, Any]) -> str:
    """`` (seen before)``, `` (seen before, corrected: mjd)``, or nothing for a new upload."""
    if not record.get("duplicate"):
        return ""
    corrected = record.get("corrected") or []
    return f" (seen before, corrected: {', '.join(corrected)})" if corrected else " (seen before)"


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The outcomes as an aligned text table, failures with their code and message below it."""
    header = ("file", "status", "survey/band", "mag", "point")
    rows = []
    for record in records:
        band = f"{record['survey']}/{record['band']}" if record.get("survey") else "-"
        status = record["status"] + _seen_before(record)
        point = "-" if record.get("point_id") is None else str(record["point_id"])
        rows.append((Path(record["file"]).name, status, band, format_magnitude(record), point))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    problems = [r for r in records if r.get("error_code") and r["status"] != "calibrated"]
    for record in problems:
        lines.append(
            f"{Path(record['file']).name}: {record['error_code']}: {record.get('error_message') or ''}"
        )
    return "\n".join(lines)
