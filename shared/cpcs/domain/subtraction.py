"""What reduce's subtraction step left for an observation: its products and its candidates."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.orm import Session

from cpcs.domain.observations import current_calibration, get_observation, get_reduction
from cpcs.errors import NotFoundError
from cpcs.schemas import Schema

#: The products of the subtraction step, by the name the API gives them.
DIFFERENCE_PRODUCTS = {"difference": "difference.fits", "noise": "difference_noise.fits"}
DifferenceProduct = Literal["difference", "noise"]


class CandidateOut(Schema):
    #: ``difference`` (found on the difference image) or ``catalogue`` (a frame without a template:
    #: a measured source absent from the reference catalogues, or brighter than its star there).
    mode: str = "difference"
    #: Catalogue mode: ``not_in_catalogue`` or ``brighter_than_catalogue``.
    found_by: str | None = None
    x: float
    y: float
    ra_deg: float
    dec_deg: float
    #: Difference mode: one-FWHM aperture flux on the difference image (science ADU); catalogue
    #: mode has none (its magnitudes are the measured-source table's).
    flux: float | None = None
    flux_err: float | None = None
    snr: float
    mag_inst: float | None
    magerr_inst: float | None
    #: ``mag_inst`` on the observation's current zero point (v1 sign: m = m_inst + zp); aperture
    #: flux within one FWHM, not aperture-corrected, so a little faint.
    mag: float | None
    size_px: float | None = None
    axis_ratio: float | None = None
    negative_fraction: float | None = None
    #: The artefact tests that fired; empty for a real candidate.
    reasons: list[str]
    accepted: bool
    #: The shape classifier's score (positive: shaped like the frame's PSF, negative: an outlier,
    #: which adds the reason ``shape_outlier``) and the features it scored; None before it existed.
    shape_score: float | None = None
    shape_outlier: bool | None = None
    shape: dict[str, float] | None = None
    #: The known Solar System body at the candidate's position (reason ``known_solar_system_object``).
    known_object: dict[str, Any] | None = None
    #: Catalogue mode: the matched star's magnitude in the calibration's band and by how much the
    #: source is brighter (None for a source absent from every catalogue).
    catalogue_mag: float | None = None
    brighter_by: float | None = None


class CandidatesOut(Schema):
    observation_id: int
    status: str  # of the subtraction: "subtracted", "failed", "skipped" or "no_template"
    #: Where the candidates come from: "difference", "catalogue" (no difference image: the
    #: calibration's catalogue comparison) or None (neither).
    mode: str | None
    template_id: int | None
    candidates: list[CandidateOut]
    #: The known Solar System object check (SkyBoT): status, note (offline, timeout), bodies.
    solar_system: dict[str, Any] | None = None
    #: Catalogue mode: the survey/band compared, the margin and the catalogue depth used.
    catalogue: dict[str, Any] | None = None


def subtraction_record(session: Session, observation_id: int) -> dict[str, Any]:
    return dict(get_reduction(session, observation_id).subtraction or {})


def difference_product_path(session: Session, observation_id: int, product: DifferenceProduct) -> str:
    """The stored path (relative to the data folder) of a difference product."""
    record = subtraction_record(session, observation_id)
    path = (record.get("products") or {}).get(DIFFERENCE_PRODUCTS[product])
    if not path:
        raise NotFoundError(
            "This image has no difference image: its alert had no template for the instrument and band "
            "when it was reduced, or the subtraction failed (see its reduction's subtraction record).",
            code="no_difference_image",
        )
    return str(path)


def list_candidates(session: Session, observation_id: int) -> CandidatesOut:
    observation = get_observation(session, observation_id)
    reduction = get_reduction(session, observation_id)
    record = dict(reduction.subtraction or {})
    calibration = current_calibration(session, observation)
    zp = calibration.zp if calibration is not None else None
    status = str(record.get("status", "no_template"))
    mode: str | None = "difference" if status == "subtracted" else None
    found = record if mode else {}
    by_catalogue = (calibration.result or {}).get("catalogue_candidates") if calibration is not None else None
    if mode is None and by_catalogue:
        mode, found = "catalogue", by_catalogue
    candidates = [
        CandidateOut(
            **{key: value for key, value in row.items() if key in CandidateOut.model_fields and key != "mag"},
            mag=None if zp is None or row.get("mag_inst") is None else round(row["mag_inst"] + zp, 4),
        )
        for row in found.get("candidates", [])
    ]
    return CandidatesOut(
        observation_id=observation_id,
        status=status,
        mode=mode,
        template_id=(record.get("template") or {}).get("id"),
        candidates=candidates,
        solar_system=found.get("solar_system"),
        catalogue=found.get("catalogue"),
    )
