"""Write ``panoptes_tycho2.csv``: the Tycho-2 stars around the PANOPTES test frames.

The reference stars of ``../shared/realdata/panoptes`` are not cached anywhere on a test machine, so
the test suite carries them. They come from Debian's ``astrometry-data-tycho2-07-littleendian``
package (astrometry.net index 4107, built from Tycho-2 with its VT magnitudes): the index's star
kd-tree stores each star as a unit vector in three scaled 32-bit integers, and its ``MAG_VT``
tag-along column the magnitude. Stars within 4 degrees of the frames' mount position (RA 301.564,
Dec +44.457) are kept: that covers the true field (2.3 degrees away, 1.4 degrees half-diagonal).
Positions are Tycho-2's (J2000 epoch, ICRS, ~0.1 arcsec at these magnitudes after 16 years of
proper motion, far below the frames' 10 arcsec pixels).

    python make_panoptes_tycho2.py /usr/share/astrometry/index-tycho2-07.littleendian.fits
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

CENTRE = (301.56439, 44.456875)
RADIUS_DEG = 4.0


def main(index_path: str) -> None:
    with fits.open(index_path) as hdus:
        by_name = {hdu.header.get("TTYPE1"): hdu for hdu in hdus[1:]}
        low, _, _, high, _, _, scale = np.frombuffer(by_name["kdtree_range_stars"].data.tobytes(), "<f8")[:7]
        del high
        codes = np.frombuffer(by_name["kdtree_data_stars"].data.tobytes(), "<u4").reshape(-1, 3)
        xyz = low + codes.astype(np.float64) / scale
        mag = np.asarray(by_name["MAG_VT"].data["MAG_VT"], dtype=np.float64)
    xyz /= np.linalg.norm(xyz, axis=1)[:, None]
    ra = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(xyz[:, 2]))
    ra0, dec0 = np.radians(CENTRE)
    cos_sep = np.sin(dec0) * np.sin(np.radians(dec)) + np.cos(dec0) * np.cos(np.radians(dec)) * np.cos(
        np.radians(ra) - ra0
    )
    keep = np.flatnonzero(cos_sep >= np.cos(np.radians(RADIUS_DEG)))
    keep = keep[np.argsort(mag[keep])]
    out = Path(__file__).with_name("panoptes_tycho2.csv")
    with out.open("w") as handle:
        handle.write("# Tycho-2 stars within 4 deg of RA 301.56439 Dec +44.456875 (make_panoptes_tycho2.py)\n")
        handle.write("ra_deg,dec_deg,vt_mag\n")
        for k in keep:
            handle.write(f"{ra[k]:.6f},{dec[k]:.6f},{mag[k]:.3f}\n")
    print(f"{keep.size} stars written to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
