"""Cheap checks of an uploaded FITS image at the door: readable, one 2-D image, a sane size.

Only headers are read (the pixels stay on disk); plain, gzip-compressed, Rice tile-compressed
(``.fz``) and multi-extension files are accepted, the first 2-D image HDU being the image.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from cpcs.errors import InputError

FITS_MAGIC = b"SIMPLE  ="
GZIP_MAGIC = b"\x1f\x8b"
MAX_HDUS = 64


@dataclass(frozen=True)
class FitsImageFacts:
    hdu_index: int
    shape: tuple[int, int]  # (ny, nx)
    bitpix: int
    compression: str | None  # None, "gzip" or "rice" (tile compression of any kind)
    header: fits.Header


def looks_like_fits(head: bytes) -> bool:
    """True for a FITS file, plain or gzip-compressed, judged by its first bytes (a few hundred suffice)."""
    if head.startswith(GZIP_MAGIC):
        try:
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 16).startswith(FITS_MAGIC)
        except zlib.error:
            return False
    return head.startswith(FITS_MAGIC)


def _image_shape(hdu: fits.hdu.base._BaseHDU) -> tuple[int, ...]:
    """The data shape (slowest axis first) from the header; tile-compressed HDUs show the image's."""
    header = hdu.header
    naxis = int(header.get("NAXIS", 0))
    return tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))


def inspect_fits_image(path: Path, *, max_pixels: int) -> FitsImageFacts:
    """The first 2-D image of a FITS file, checked without reading its pixels.

    Raises
    ------
    InputError
        ``unreadable_image`` (not FITS, corrupt header), ``no_image_in_fits`` (only tables),
        ``image_not_2d`` (1-D or a real 3-D cube), ``image_too_large`` (413) past ``max_pixels``,
        ``truncated_image`` when the file is shorter than its header promises.
    """
    with open(path, "rb") as handle:
        head = handle.read(16)
    compression = "gzip" if head.startswith(GZIP_MAGIC) else None
    if compression is None and not head.startswith(FITS_MAGIC):
        raise InputError(
            "The file is not a FITS image (it does not start with 'SIMPLE  ='). Upload a FITS file "
            "(.fits, .fits.gz or .fz), or a source catalogue as a catalogue.",
            code="unreadable_image",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=compression is None, lazy_load_hdus=True) as hdus:
                found_table = False
                for index, hdu in enumerate(hdus):
                    if index >= MAX_HDUS:
                        break
                    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)) and not isinstance(
                        hdu, fits.CompImageHDU
                    ):
                        found_table = True
                        continue
                    shape = _image_shape(hdu)
                    if not shape or all(n == 0 for n in shape):
                        continue
                    squeezed = tuple(n for n in shape if n != 1)
                    if len(squeezed) != 2:
                        raise InputError(
                            f"HDU {index} holds a {len(shape)}-D array of shape {shape}; CPCS calibrates "
                            "one 2-D image (send each plane as its own file).",
                            code="image_not_2d",
                        )
                    ny, nx = squeezed
                    if ny * nx > max_pixels:
                        raise InputError(
                            f"The image has {nx}x{ny} pixels, more than the {max_pixels} allowed.",
                            code="image_too_large",
                            http_status=413,
                        )
                    if isinstance(hdu, fits.CompImageHDU):
                        compression = "rice"
                    elif compression is None:
                        info = hdu.fileinfo()
                        needed = info["datLoc"] + abs(int(hdu.header.get("BITPIX", 8))) // 8 * int(
                            np.prod(shape)
                        )
                        if Path(path).stat().st_size < needed:
                            raise InputError(
                                "The FITS file is truncated: its header promises more pixels than the "
                                "file holds. Upload the whole file again.",
                                code="truncated_image",
                            )
                    return FitsImageFacts(
                        index, (ny, nx), int(hdu.header.get("BITPIX", 0)), compression, hdu.header.copy()
                    )
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"The FITS file cannot be read ({type(exc).__name__}). Check that it is a complete FITS image.",
            code="unreadable_image",
        ) from None
    if found_table:
        raise InputError(
            "This FITS file holds a table, not an image: upload source catalogues as a catalogue "
            "(the sexCat field).",
            code="no_image_in_fits",
        )
    raise InputError("The FITS file holds no image data.", code="no_image_in_fits")
