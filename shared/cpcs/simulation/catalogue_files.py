"""Uploads in the binary formats CPCS accepts: a FITS table and SExtractor's FITS-LDAC."""

from __future__ import annotations

import io

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray


def _columns(
    ra: NDArray[np.float64], dec: NDArray[np.float64], mag: NDArray[np.float64], magerr: NDArray[np.float64]
) -> list[fits.Column]:
    return [
        fits.Column(name="NUMBER", format="J", array=np.arange(1, ra.size + 1)),
        fits.Column(name="MAG_AUTO", format="E", unit="mag", array=mag),
        fits.Column(name="MAGERR_AUTO", format="E", unit="mag", array=magerr),
        fits.Column(name="ALPHA_J2000", format="D", unit="deg", array=ra),
        fits.Column(name="DELTA_J2000", format="D", unit="deg", array=dec),
    ]


def _bytes(hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU]) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    return buffer.getvalue()


def to_fits_table(
    ra: NDArray[np.float64], dec: NDArray[np.float64], mag: NDArray[np.float64], magerr: NDArray[np.float64]
) -> bytes:
    return _bytes([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(_columns(ra, dec, mag, magerr))])


def to_fits_ldac(
    ra: NDArray[np.float64],
    dec: NDArray[np.float64],
    mag: NDArray[np.float64],
    magerr: NDArray[np.float64],
    image_header: dict[str, object] | None = None,
) -> bytes:
    """SExtractor's FITS_LDAC layout: the image header as one text cell, then the objects table."""
    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, -32, 0
    for key, value in (image_header or {}).items():
        header[key] = value
    text = header.tostring()
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
    objects = fits.BinTableHDU.from_columns(_columns(ra, dec, mag, magerr), name="LDAC_OBJECTS")
    return _bytes([fits.PrimaryHDU(), imhead, objects])
