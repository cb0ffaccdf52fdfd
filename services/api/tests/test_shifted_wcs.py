"""The WCS of a cutout: the frame's, moved so that the cutout's pixel (0, 0) is the frame's (dx, dy)."""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS, Sip

from cpcs_api.image_views import shifted_wcs


def _frame_wcs(with_sip: bool) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if with_sip else ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [295.0, 30.1]
    wcs.wcs.crpix = [1024.5, 1024.5]
    wcs.wcs.cd = [[-1.6e-4, 1.0e-6], [1.2e-6, 1.6e-4]]
    if with_sip:
        a, b = np.zeros((3, 3)), np.zeros((3, 3))
        a[2, 0], a[0, 2], b[1, 1] = 2e-6, -1e-6, 3e-6  # a few pixels of distortion at the corners
        wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    wcs.wcs.set()
    return wcs


def test_a_shifted_wcs_gives_the_same_sky_at_the_same_frame_pixel() -> None:
    rng = np.random.default_rng(2)
    for with_sip in (False, True):
        frame = _frame_wcs(with_sip)
        for dx, dy in ((0, 0), (1700, 35), (-40, 1990)):
            moved = shifted_wcs(frame, dx, dy)
            x, y = rng.uniform(-50, 100, 20), rng.uniform(-50, 100, 20)
            ra, dec = moved.all_pix2world(x, y, 0)
            ra0, dec0 = frame.all_pix2world(x + dx, y + dy, 0)
            np.testing.assert_allclose(ra, ra0, atol=1e-10)
            np.testing.assert_allclose(dec, dec0, atol=1e-10)
        if with_sip:  # the distortion is there, so the check above could have failed without it
            plain = _frame_wcs(False)
            corner = np.abs(np.subtract(frame.all_pix2world(0, 0, 0), plain.all_pix2world(0, 0, 0)))
            assert corner.max() > 1e-5
