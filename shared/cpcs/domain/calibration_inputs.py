"""The source list a calibration fits, read back the one way the calibrate worker and the plots share:
the table reduce measured on an image (its calibrators), or the uploaded catalogue read with the
calibration's magnitude column and aperture."""

from __future__ import annotations

from astropy.table import Table

from cpcs.context import Context
from cpcs.formats.source_catalogue import read_source_catalogue
from cpcs.science.imaging.source_table import Calibrators, calibrators


def calibration_sources(
    context: Context,
    *,
    sources_path: str | None,
    upload_sha256: str | None,
    filename: str | None = None,
    magnitude_column: str | None = None,
    aperture_index: int = 0,
) -> Calibrators:
    """The stars a calibration may use: from ``sources_path`` (an image's measured sources, under the
    data folder) when given, else from the uploaded catalogue ``upload_sha256`` (``filename`` names
    it in errors)."""
    if sources_path is not None:
        return calibrators(Table.read(context.settings.data_dir / sources_path))
    if upload_sha256 is None:
        raise ValueError("a calibration reads either an image's sources or an uploaded catalogue")
    catalogue = read_source_catalogue(
        context.files.get(upload_sha256),
        filename=filename,
        magnitude_column=magnitude_column,
        aperture_index=aperture_index,
    )
    return Calibrators(catalogue.ra_deg, catalogue.dec_deg, catalogue.mag, catalogue.magerr)
