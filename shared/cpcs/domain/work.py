"""The one rule for which message sets a calibration request to work.

A catalogue goes to calibrate as it was uploaded (``catalogue.received``); an image goes to reduce
first (``image.received``), and once its sources are measured and stored, to calibrate as that table
(``sources.measured``). Uploads, recalibrations and reduce all ask here, so the three cannot drift.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from cpcs.messages import CalibrationParamsV1, CatalogueReceivedV1, ImageReceivedV1, SourcesMeasuredV1

RequestWork: TypeAlias = CatalogueReceivedV1 | ImageReceivedV1 | SourcesMeasuredV1


def work_message(
    *,
    kind: Literal["catalogue", "image"] | str,
    observation_id: int,
    calibration_request_id: int,
    alert_id: int,
    params: CalibrationParamsV1,
    upload_sha256: str,
    sources_path: str | None = None,
) -> RequestWork:
    """The message that gets a calibration request done.

    Parameters
    ----------
    kind : {"catalogue", "image"}
        What was uploaded (``Upload.kind``).
    sources_path : str, optional
        For an image already reduced: its stored measured-source table (relative to the data folder).
    """
    ids = {"observation_id": observation_id, "calibration_request_id": calibration_request_id}
    if kind == "catalogue":
        return CatalogueReceivedV1(**ids, alert_id=alert_id, upload_sha256=upload_sha256, params=params)
    if kind != "image":
        raise ValueError(f"unknown upload kind {kind!r}")
    if sources_path is None:
        return ImageReceivedV1(**ids, alert_id=alert_id, upload_sha256=upload_sha256, params=params)
    return SourcesMeasuredV1(**ids, alert_id=alert_id, sources_path=sources_path, params=params)
