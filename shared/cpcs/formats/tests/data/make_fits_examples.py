"""Write the FITS files of the test corpus (run from anywhere; files land beside this script).

    .venv/bin/python shared/cpcs/formats/tests/data/make_fits_examples.py

The stars are those of ``sextractor_auto.cat``: eight sources near RA 150.11, Dec +2.20, the last
one a failed measurement (magnitude and error 99). Output is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

HERE = Path(__file__).resolve().parent

RA = np.array([150.10012, 150.11234, 150.09541, 150.12117, 150.08888, 150.10555, 150.13001, 150.09999])
DEC = np.array([2.20015, 2.21043, 2.19233, 2.18777, 2.22222, 2.21555, 2.20500, 2.19999])
MAG = np.array([-9.488, -10.221, -8.7733, -11.0042, -7.9987, -9.9001, -12.1003, 99.0])
MAGERR = np.array([0.012, 0.0081, 0.0215, 0.0052, 0.0412, 0.0101, 0.0031, 99.0])
FLAGS = np.array([0, 0, 2, 0, 0, 16, 4, 0], dtype=np.int16)
N = RA.size


def apertures(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` apertures per star: aperture j is 0.05*j mag fainter; failed stars stay 99."""
    offsets = 0.05 * np.arange(k)
    mag = np.where(MAG[:, None] > 90, 99.0, MAG[:, None] + offsets[None, :])
    return mag.astype(np.float32), np.repeat(MAGERR[:, None], k, axis=1).astype(np.float32)


def write(hdus: list[fits.hdu.base._BaseHDU], name: str) -> None:
    path = HERE / name
    path.parent.mkdir(exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)


def table_fits() -> None:
    mag_aper, magerr_aper = apertures(3)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="NUMBER", format="J", array=np.arange(1, N + 1)),
            fits.Column(name="ALPHA_J2000", format="D", unit="deg", array=RA),
            fits.Column(name="DELTA_J2000", format="D", unit="deg", array=DEC),
            fits.Column(name="MAG_APER", format="3E", unit="mag", array=mag_aper),
            fits.Column(name="MAGERR_APER", format="3E", unit="mag", array=magerr_aper),
            fits.Column(name="MAG_AUTO", format="E", unit="mag", array=MAG),
            fits.Column(name="MAGERR_AUTO", format="E", unit="mag", array=MAGERR),
            fits.Column(name="FLAGS", format="I", array=FLAGS),
        ]
    )
    write([fits.PrimaryHDU(), table], "table.fits")


def ascii_table_fits() -> None:
    """A FITS ASCII-table extension with non-SExtractor names (RA, DEC, MAG_PSF, MAGERR_PSF)."""
    table = fits.TableHDU.from_columns(
        [
            fits.Column(name="RA", format="F12.7", array=RA),
            fits.Column(name="DEC", format="F12.7", array=DEC),
            fits.Column(name="MAG_PSF", format="F9.4", array=MAG),
            fits.Column(name="MAGERR_PSF", format="F9.4", array=MAGERR),
        ]
    )
    write([fits.PrimaryHDU(), table], "ascii_table.fits")


def ldac_fits() -> None:
    image_header = fits.Header()
    image_header["SIMPLE"] = True
    image_header["BITPIX"] = -32
    image_header["NAXIS"] = 2
    image_header["NAXIS1"] = 2048
    image_header["NAXIS2"] = 2048
    image_header["DATE-OBS"] = ("2024-03-05T21:14:07.5", "start of exposure (UTC)")
    image_header["EXPTIME"] = (120.0, "[s] exposure time")
    image_header["FILTER"] = "R"
    image_header["OBJECT"] = "AT2024abc"
    image_header["SATURATE"] = True
    image_header["COMMENT"] = "image header stored by SExtractor in LDAC_IMHEAD"
    text = image_header.tostring()
    cards = np.array([text[i : i + 80] for i in range(0, len(text), 80)])
    imhead = fits.BinTableHDU.from_columns(
        [
            fits.Column(
                name="Field Header Card",
                format=f"{len(text)}A",
                dim=f"(80, {cards.size})",
                array=cards.reshape(1, -1),
            )
        ],
        name="LDAC_IMHEAD",
    )
    mag_aper, magerr_aper = apertures(4)
    objects = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="NUMBER", format="J", array=np.arange(1, N + 1)),
            fits.Column(name="MAG_APER", format="4E", unit="mag", array=mag_aper),
            fits.Column(name="MAGERR_APER", format="4E", unit="mag", array=magerr_aper),
            fits.Column(name="ALPHA_J2000", format="1D", unit="deg", array=RA),
            fits.Column(name="DELTA_J2000", format="1D", unit="deg", array=DEC),
            fits.Column(name="FLAGS", format="1I", array=FLAGS),
        ],
        name="LDAC_OBJECTS",
    )
    write([fits.PrimaryHDU(), imhead, objects], "ldac.fits")


def bad_fits() -> None:
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    write([fits.PrimaryHDU(image)], "bad/image.fits")
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ALPHA_J2000", format="D", array=RA),
            fits.Column(name="DELTA_J2000", format="D", array=DEC),
            fits.Column(name="FLUX_AUTO", format="E", array=10 ** (-0.4 * MAG)),
        ]
    )
    write([fits.PrimaryHDU(), table], "bad/no_magnitude.fits")
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ALPHA_J2000", format="2D", array=np.stack([RA, RA], axis=1)),
            fits.Column(name="DELTA_J2000", format="D", array=DEC),
            fits.Column(name="MAG_AUTO", format="E", array=MAG),
            fits.Column(name="MAGERR_AUTO", format="E", array=MAGERR),
        ]
    )
    write([fits.PrimaryHDU(), table], "bad/vector_ra.fits")


if __name__ == "__main__":
    table_fits()
    ascii_table_fits()
    ldac_fits()
    bad_fits()
