"""A point as SkyPortal photometry: PUT it once, PATCH its row on a new version, DELETE it at the end.

The body is the light-curve export's SkyPortal packet (``cpcs.lightcurve.exports.skyportal_packet``),
so a point sent by the delivery and the same point downloaded as ``skyportal-mag`` are the same dict.

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
  non-null for every row, so we always send one.
* ``filter`` must be a name of sncosmo's bandpass registry (``ALLOWED_BANDPASSES``) that the
  instrument lists, and ``magsys`` one of sncosmo's magnitude systems (``ALLOWED_MAGSYSTEMS``); we
  use ``ab`` and ``vega`` only. The names come from the filter registry, ``cpcs.science.bands``.
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
from typing import Any

from cpcs.lightcurve.exports import ExportRow, SkippedPoint, SkyPortalOptions, skyportal_packet

_WHY_NOT = {
    "no_sncosmo_bandpass": "its band has no sncosmo bandpass or magnitude system",
    "no_mjd": "the point has no MJD; SkyPortal requires one",
    "no_magnitude": "the point's magnitude or error is not finite",
    "no_flux": "the point has no AB flux",
}


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


def photometry_body(row: ExportRow, *, instrument_id: int, group_ids: list[int]) -> dict[str, Any]:
    """The PUT body for one point (a single row in mag space).

    Raises :class:`NotSendable` when SkyPortal could not accept the point whatever we retried.
    """
    options = SkyPortalOptions(instrument_id=instrument_id, group_ids=[int(g) for g in group_ids])
    packet = skyportal_packet(row, "mag", options)
    if isinstance(packet, SkippedPoint):
        raise NotSendable(f"{_WHY_NOT[packet.reason]} ({row.survey}/{row.band})")
    return packet


def update_body(body: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body of a new version: its PUT body without ``limiting_mag_nsigma`` (see above)."""
    return {key: value for key, value in body.items() if key != "limiting_mag_nsigma"}


def encode_body(body: dict[str, Any]) -> bytes:
    """The JSON bytes sent (compact; NaN refused)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
