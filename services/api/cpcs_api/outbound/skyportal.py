"""A point as SkyPortal photometry: PUT it once, PATCH its row on a new version, DELETE it at the end.

* the point's first calibration: ``PUT {base_url}/api/photometry`` (:func:`photometry_body`); the
  answer names the new row, ``{"status": "success", "data": {"ids": [id], ...}}``, and the
  delivery keeps that row's URL, ``{base_url}/api/photometry/{id}`` (:func:`row_url`);
* a new calibration version of that point: ``PATCH`` of the row (:func:`update_body`);
* the point's deletion: ``DELETE`` of the row (no body).

What this relies on, read in skyportal/skyportal at commit 8bd346c0d453f3a69d457056e621bb50607e7ab1
(2026-08-21) — ``skyportal/models/schema.py`` (``PhotBaseFlexible``, ``PhotMagFlexible``,
``PhotometryMag``), ``skyportal/handlers/api/photometry.py`` (``PhotometryHandler.put`` and
``standardize_photometry_data``), ``skyportal/enum_types.py`` — and in the older
``skyportal/schema.py`` (commit 0074ff5055dd4404c22e1aa9ba5814d603c843d0):

* PUT takes the same body as POST and first looks for duplicates of each row on
  ``(obj_id, instrument_id, origin, mjd, flux, fluxerr)``: a repeat only adds groups, so sending a
  delivery twice is harmless. Success is HTTP 200 ``{"status": "success", "data": {"ids":
  [...]}}``; a refusal is ``self.error(...)`` (baselayer's error answer, HTTP 400 unless told
  otherwise) ``{"status": "error", "message": ...}``. The token goes in ``Authorization: token …``.
* The body is validated by the marshmallow schema ``PhotMagFlexible`` (unknown keys are refused,
  marshmallow's default): required ``obj_id``, ``mjd``, ``instrument_id``, ``filter``, ``magsys``;
  optional ``mag``, ``magerr``, ``limiting_mag``, ``limiting_mag_nsigma``, ``origin``,
  ``group_ids`` (a list of ints, or ``"all"``), ``altdata`` (a dict), ``assignment_id``, ``ra``,
  ``dec``, ``ra_unc``, ``dec_unc``, ``stream_ids``, ``magref``, ``e_magref``. Any list value outside
  ``group_ids``/``stream_ids`` makes the body a *table*, so we send scalars only.
* ``mag`` and ``magerr`` are both null (a non-detection) or both numbers; a non-detection needs
  ``limiting_mag``; ``mag``, ``magerr`` and ``limiting_mag`` must be finite. At HEAD
  ``limiting_mag`` is optional for detections, but the older schema made it required and
  non-null for every row, so we always send one (see :func:`limiting_magnitude`).
* ``filter`` must be a name of sncosmo's bandpass registry (``ALLOWED_BANDPASSES``) that the
  instrument lists, and ``magsys`` one of sncosmo's magnitude systems (``ALLOWED_MAGSYSTEMS``); we
  use ``ab`` and ``vega`` only. The bandpass names below are those registered in
  sncosmo/sncosmo ``sncosmo/builtins.py`` (commit 6c344013a1925fd520c638e4fe5cb21c0211a0ab).
* ``altdata`` is turned into one record through a pandas DataFrame: its values must be scalars
  (a nested dict or a list would become several rows); ``None`` values are dropped.

Updates and deletions, read in ``PhotometryHandler.patch``/``.delete`` (skyportal/skyportal
commit 8708530230c484284587acd9dd453cb9cdc98e59) and ``PhotBase``/``PhotometryMag`` of
``skyportal/models/schema.py``:

* ``PATCH /api/photometry/{id}`` pops ``group_ids`` and ``stream_ids``, then loads the rest with
  ``PhotometryFlux``, else ``PhotometryMag``: the PUT keys without ``limiting_mag_nsigma`` (an
  unknown key there, refused); ``limiting_mag`` is required; an upper limit's noise is taken as
  the limit over 5 sigma, as ours is. ``PhotometryMag`` builds the new row without ``altdata``,
  so SkyPortal keeps the ``altdata`` of the first PUT (the new version is in the values and in
  our calibration history). Success is ``{"status": "success", "data": {}}``.
* ``DELETE /api/photometry/{id}`` removes the row. A row that is not there is an ``AccessError``
  ``Invalid Photometry id: {id}``, which baselayer answers with HTTP 400: for a DELETE that means
  an earlier attempt (whose answer we lost) or somebody at SkyPortal already removed it, so we
  count it as done (:func:`already_deleted`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from cpcs.catalogs.surveys import find_survey
from cpcs.science.bands import STANDARD_BANDS
from cpcs_api.outbound.facts import PointFacts, calibrations_url, observation_url

#: ``origin`` of every photometry row CPCS sends (SkyPortal de-duplicates on it).
ORIGIN = "cpcs"
#: CPCS limiting magnitudes are 5-sigma limits (ARCHITECTURE.md, "Errors of the target").
LIMIT_NSIGMA = 5.0
#: The alert-name prefix SkyPortal object ids do not have.
IVORN_PREFIX = "ivo://"

SncosmoMagsys = Literal["ab", "vega"]

# --------------------------------------------------------------------------------------------------
# Band names. Provisional: the filter registry (``cpcs.science.bands``) will provide the mapping of
# (survey, band) to an sncosmo bandpass; until it lands, this private table stands in for it behind
# :func:`sncosmo_name` and :func:`sncosmo_magsys` only.

_BY_BAND: dict[str, str] = {
    # Johnson-Cousins (observed by APASS, derived from SDSS/PS1, synthesised by Gaia XP): Bessell.
    "U": "bessellux",
    "B": "bessellb",
    "V": "bessellv",
    "R": "bessellr",
    "I": "besselli",
    # Sloan letters (SDSS, APASS g'r'i', Gaia XP synthetic Sloan): the SDSS bandpasses.
    "u": "sdssu",
    "g": "sdssg",
    "r": "sdssr",
    "i": "sdssi",
    "z": "sdssz",
    "y": "ps1::y",
    # 2MASS; its K is Ks.
    "J": "2massj",
    "H": "2massh",
    "K": "2massks",
    "Ks": "2massks",
    # Gaia broad bands.
    "G": "gaia::g",
    "BP": "gaia::gbp",
    "RP": "gaia::grp",
}
_BY_SURVEY_BAND: dict[tuple[str, str], str] = {
    ("PS1", "g"): "ps1::g",
    ("PS1", "r"): "ps1::r",
    ("PS1", "i"): "ps1::i",
    ("PS1", "z"): "ps1::z",
    ("PS1", "y"): "ps1::y",
}
_MAGSYS: dict[str, SncosmoMagsys] = {"AB": "ab", "Vega": "vega"}


def _canonical_survey(survey: str) -> str:
    definition = find_survey(survey)
    return definition.name if definition is not None else survey


def sncosmo_name(survey: str, band: str) -> str | None:
    """sncosmo's name of the bandpass a point calibrated to ``survey``/``band`` is in; ``None`` if none.

    Provisional stand-in for the filter registry's mapping (same contract: known surveys by their
    canonical names, other surveys by the standard band of the same name, unfiltered has none).
    """
    if band == "Clear":
        return None
    return _BY_SURVEY_BAND.get((_canonical_survey(survey), band)) or _BY_BAND.get(band)


def sncosmo_magsys(survey: str, band: str) -> SncosmoMagsys | None:
    """``"ab"`` or ``"vega"``: the magnitude system of ``survey``/``band``; ``None`` when unknown."""
    definition = find_survey(survey)
    system: str | None = None
    if definition is not None and definition.has_band(band):
        system = definition.band(band).system
    if system is None and band != "Clear":
        standard = STANDARD_BANDS.get("K" if band == "Ks" else band)
        system = standard.system if standard is not None else None
    return _MAGSYS.get(system) if system is not None else None


# --------------------------------------------------------------------------------------------------
# The request.


class NotSendable(ValueError):
    """The point cannot be expressed as SkyPortal photometry (no MJD, no sncosmo band …)."""


def photometry_url(base_url: str) -> str:
    """SkyPortal's photometry endpoint under ``base_url``."""
    return f"{base_url.rstrip('/')}/api/photometry"


def row_url(base_url: str, photometry_id: int) -> str:
    """The URL of one photometry row (PATCH and DELETE go there)."""
    return f"{photometry_url(base_url)}/{int(photometry_id)}"


def is_row_of(url: str, base_url: str) -> bool:
    """Whether ``url`` is a photometry row of the instance at ``base_url`` (not of an earlier one)."""
    prefix = photometry_url(base_url) + "/"
    return url.startswith(prefix) and url[len(prefix) :].isdigit()


def photometry_id(answer: bytes) -> int | None:
    """The row id SkyPortal's answer to a one-row PUT names (``data.ids[0]``); ``None`` if none."""
    try:
        document = json.loads(answer)
    except ValueError:
        return None
    data = document.get("data") if isinstance(document, dict) else None
    ids = data.get("ids") if isinstance(data, dict) else None
    if isinstance(ids, list) and ids and isinstance(ids[0], int) and not isinstance(ids[0], bool):
        return ids[0]
    return None


def already_deleted(http_status: int, message: str) -> bool:
    """Whether SkyPortal's refusal of a DELETE says the row is not there any more."""
    return http_status == 400 and message.startswith("Invalid Photometry id")


def request_headers(token: str) -> dict[str, str]:
    """The headers of a photometry request (the token as SkyPortal expects it)."""
    return {"Authorization": f"token {token}", "Content-Type": "application/json"}


def obj_id(alert_name: str) -> str:
    """SkyPortal's object id of an alert: its name without ``ivo://``."""
    return alert_name[len(IVORN_PREFIX) :] if alert_name.startswith(IVORN_PREFIX) else alert_name


def limiting_magnitude(facts: PointFacts) -> tuple[float, bool]:
    """The 5-sigma limiting magnitude to send, and whether it was estimated here.

    CPCS computes the limit from the catalogue's S/N against magnitude; when it could not (a
    detection on a frame without enough faint sources), the limit is estimated from the detection
    itself assuming background-limited noise: the 5-sigma flux is the target's flux times 5/SNR,
    SNR = 1.0857 / measurement error. For an upper limit the point's magnitude is the limit.
    """
    if facts.limit_mag is not None:
        return facts.limit_mag, False
    if facts.is_upper_limit:
        return facts.mag, False
    error = facts.magerr if facts.magerr > 0 else facts.mag_err_total
    if not error > 0:
        raise NotSendable("the point has neither a limiting magnitude nor an error to estimate one")
    snr = 2.5 / math.log(10) / error
    return facts.mag + 2.5 * math.log10(snr / LIMIT_NSIGMA), True


def _altdata(facts: PointFacts, base_url: str, limit_estimated: bool) -> dict[str, Any]:
    """Calibration facts for ``altdata``: a flat dict of scalars (see the module docstring)."""
    values: dict[str, Any] = {
        "cpcs_point_id": facts.point_id,
        "cpcs_observation_id": facts.observation_id,
        "cpcs_calibration_id": facts.calibration_id,
        "cpcs_calibration_version": facts.calibration_version,
        "cpcs_pipeline_version": facts.pipeline_version,
        "calibration_url": calibrations_url(base_url, facts.observation_id),
        "observation_url": observation_url(base_url, facts.observation_id),
        "observer": facts.observer,
        "observatory": facts.observatory,
        "filter_declared": facts.filter_declared,
        "reference_survey": facts.survey,
        "reference_band": facts.band,
        "catalogue_release": facts.catalogue_release,
        "calibration_mode": facts.calibration_mode,
        "zero_point": facts.zp,
        "zero_point_err": facts.zp_err,
        "colour_index": facts.colour_index,
        "colour_term": facts.colour_term,
        "colour_term_err": facts.colour_term_err,
        "scatter": facts.scatter,
        "n_stars": facts.n_stars,
        "outlier_fraction": facts.outlier_fraction,
        "magerr_measurement": facts.magerr,
        "magerr_calibration": facts.caliberr,
        "is_upper_limit": facts.is_upper_limit,
        "limiting_mag_estimated": limit_estimated,
    }
    return {key: value for key, value in values.items() if value is not None}


def photometry_body(
    facts: PointFacts, *, instrument_id: int, group_ids: list[int], base_url: str = ""
) -> dict[str, Any]:
    """The PUT body for one point (a single row in mag space).

    A detection carries ``mag`` and ``magerr`` (the total error: measurement and calibration);
    an upper limit has both null and its limit in ``limiting_mag``. Raises :class:`NotSendable`
    when SkyPortal could not accept the point whatever we retried.
    """
    if facts.mjd is None:
        raise NotSendable("the point has no MJD; SkyPortal requires one")
    bandpass = sncosmo_name(facts.survey, facts.band)
    if bandpass is None:
        raise NotSendable(f"no sncosmo bandpass for {facts.survey}/{facts.band}")
    magsys = sncosmo_magsys(facts.survey, facts.band)
    if magsys is None:
        raise NotSendable(f"unknown magnitude system of {facts.survey}/{facts.band}")
    limit, estimated = limiting_magnitude(facts)
    detected = not facts.is_upper_limit
    if detected and not (math.isfinite(facts.mag) and math.isfinite(facts.mag_err_total)):
        raise NotSendable("the point's magnitude or error is not finite")
    if not math.isfinite(limit):
        raise NotSendable("the limiting magnitude is not finite")
    return {
        "obj_id": obj_id(facts.alert_name),
        "mjd": facts.mjd,
        "instrument_id": instrument_id,
        "filter": bandpass,
        "magsys": magsys,
        "mag": facts.mag if detected else None,
        "magerr": facts.mag_err_total if detected else None,
        "limiting_mag": limit,
        "limiting_mag_nsigma": LIMIT_NSIGMA,
        "origin": ORIGIN,
        "altdata": _altdata(facts, base_url, estimated),
        "group_ids": [int(group) for group in group_ids],
    }


def update_body(body: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body of a new version: its PUT body without ``limiting_mag_nsigma`` (see above)."""
    return {key: value for key, value in body.items() if key != "limiting_mag_nsigma"}


def encode_body(body: dict[str, Any]) -> bytes:
    """The JSON bytes sent (compact; NaN refused)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
