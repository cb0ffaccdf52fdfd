"""The door's footprint check of frames that carry only a pointing (no WCS)."""

from __future__ import annotations

import pytest
from astropy.io import fits

from cpcs.errors import InputError
from cpcs.science.imaging.header import standardise_header
from cpcs_ingest.footprint import check_image_covers


def _pointing_only(ra: float, dec: float) -> fits.Header:
    header = fits.Header()
    header["RA-MNT"], header["DEC-MNT"], header["PIXSCALE"] = ra, dec, 10.3
    return header


def test_a_crop_whose_mount_position_is_degrees_away_is_taken() -> None:
    """A PANOPTES crop: the mount 2.3 degrees from the crop (and from an alert on it)."""
    header = standardise_header(_pointing_only(301.56439, 44.456875))
    check_image_covers(header, (700, 700), 303.0, 46.1)


def test_a_pointing_far_from_the_alert_is_refused() -> None:
    header = standardise_header(_pointing_only(301.56439, 44.456875))
    with pytest.raises(InputError) as refused:
        check_image_covers(header, (700, 700), 320.0, 30.0)
    assert refused.value.code == "image_not_near_target"
