"""The difference measurement of an image's target, beside the direct one.

Reduce stores the target measured on the difference image (when the alert has a template) in the
reduction's ``subtraction`` record; calibrate puts it on the same zero point as the direct point and
keeps it in the calibration's result under ``difference``. The point itself stays the direct one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cpcs.db.models import ImageReduction
from cpcs.science.field_calibration import FieldCalibration, ForcedTarget


@dataclass(frozen=True)
class DifferenceTarget:
    forced: ForcedTarget
    template: dict[str, Any]


def difference_target(session: Session, observation_id: int) -> DifferenceTarget | None:
    """The target measured on the difference image, if reduce subtracted a template."""
    reduction = session.scalar(select(ImageReduction).where(ImageReduction.observation_id == observation_id))
    record = reduction.subtraction if reduction is not None else None
    if not record or record.get("status") != "subtracted":
        return None
    target = record["target"]

    def number(key: str) -> float:
        value = target.get(key)
        return float("nan") if value is None else float(value)

    forced = ForcedTarget(
        mag_inst=number("mag_inst"),
        magerr_inst=number("magerr_inst"),
        limit_mag_inst=number("limit_mag_inst_5sigma"),
        snr=number("snr"),
    )
    return DifferenceTarget(forced, dict(record.get("template") or {}))


def difference_record(
    difference: DifferenceTarget | None, calibrated: FieldCalibration | None
) -> dict[str, Any] | None:
    """What the calibration keeps of the difference measurement (None without one)."""
    if difference is None or calibrated is None:
        return None
    target = calibrated.target

    def finite(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else round(float(value), 5)

    return {
        "measurement": "difference",
        "template": difference.template,
        "mag": finite(target.mag),
        "mag_err_total": finite(target.err_total),
        "magerr": finite(target.err_measurement),
        "caliberr": finite(math.hypot(target.err_zero_point, target.err_scatter, target.err_colour)),
        "is_upper_limit": target.is_upper_limit,
        "limit_mag": finite(target.limit_mag),
        "snr": finite(target.snr),
        "inst_mag": finite(calibrated.target_inst_mag),
        "zp": finite(calibrated.fit.zp),
    }
