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
    x: float
    y: float
    ra_deg: float
    dec_deg: float
    flux: float
    flux_err: float
    snr: float
    mag_inst: float | None
    magerr_inst: float | None
    #: ``mag_inst`` on the observation's current zero point (v1 sign: m = m_inst + zp); aperture
    #: flux within one FWHM, not aperture-corrected, so a little faint.
    mag: float | None
    size_px: float
    axis_ratio: float
    negative_fraction: float
    #: The artefact tests that fired; empty for a real candidate.
    reasons: list[str]
    accepted: bool
    #: The shape classifier's score (positive: shaped like the frame's PSF, negative: an outlier,
    #: which adds the reason ``shape_outlier``) and the features it scored; None before it existed.
    shape_score: float | None = None
    shape_outlier: bool | None = None
    shape: dict[str, float] | None = None


class CandidatesOut(Schema):
    observation_id: int
    status: str  # "subtracted", "failed", "skipped" or "no_template"
    template_id: int | None
    candidates: list[CandidateOut]


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
    candidates = [
        CandidateOut(
            **{key: value for key, value in row.items() if key in CandidateOut.model_fields},
            mag=None if zp is None or row.get("mag_inst") is None else round(row["mag_inst"] + zp, 4),
        )
        for row in record.get("candidates", [])
    ]
    return CandidatesOut(
        observation_id=observation_id,
        status=str(record.get("status", "no_template")),
        template_id=(record.get("template") or {}).get("id"),
        candidates=candidates,
    )
