"""Cheap checks of an uploaded FITS image at the door: readable, one 2-D image, a sane size.

Only headers are read (the pixels stay on disk); plain, gzip-compressed, Rice tile-compressed
(``.fz``) and multi-extension files are accepted, the first 2-D image HDU being the image.

Before astropy parses anything, :func:`_check_structure` walks the file's HDUs from their raw
cards: every header must end within ``MAX_HEADER_BLOCKS`` blocks, BITPIX must be a FITS value, and
the file must hold the data every header promises (a cut file, plain or compressed, is refused
here rather than failing in reduce). A gzip file is inflated on the way, as a stream, and refused
once it expands beyond the largest image the server accepts (a compressed bomb).
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from cpcs.errors import InputError

FITS_MAGIC = b"SIMPLE  ="
GZIP_MAGIC = b"\x1f\x8b"
MAX_HDUS = 64
BLOCK_BYTES = 2880
CARD_BYTES = 80
#: Longest header of one HDU, in 2880-byte blocks of 36 cards: 10 800 cards (observatories write
#: a few hundred; more is a file written wrongly, or one meant to keep the server busy).
MAX_HEADER_BLOCKS = 300
VALID_BITPIX = (8, 16, 32, 64, -32, -64)
#: What a gzip-compressed upload may expand to beyond the pixels of the largest accepted image.
INFLATE_HEADROOM_BYTES = 64 * 1024 * 1024
_CHUNK_BYTES = 1 << 20


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
        ``truncated_image`` when the file is shorter than its headers promise, ``invalid_bitpix``,
        ``header_too_large``, ``decompressed_too_large`` (413) for a gzip bomb.
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
    _check_structure(
        path, gzipped=compression == "gzip", max_inflated=8 * max_pixels + INFLATE_HEADROOM_BYTES
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


# --------------------------------------------------------------------------------------------------
# The raw structure, before astropy reads anything.


def _truncated(detail: str) -> InputError:
    return InputError(
        f"The FITS file is truncated: {detail}. Upload the whole file again.", code="truncated_image"
    )


class _Inflater:
    """A gzip file's content as a stream (members after the first and zero padding included)."""

    def __init__(self, handle: BinaryIO, limit: int):
        self.handle = handle
        self.limit = limit
        self.total = 0
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""
        self._ended = False

    def read(self, want: int) -> bytes:
        """Up to ``want`` bytes; empty only at the end of the content."""
        while not self._ended:
            if self._inflater.eof and not self._next_member():
                break
            if not self._input:
                self._input = self._inflater.unconsumed_tail or self.handle.read(_CHUNK_BYTES)
                if not self._input:
                    raise _truncated("the gzip stream ends before its end marker")
            try:
                out = self._inflater.decompress(self._input, want)
            except zlib.error as exc:
                raise InputError(
                    f"The gzip-compressed file is corrupt ({exc}). Compress the image again and upload it.",
                    code="unreadable_image",
                ) from None
            self._input = self._inflater.unconsumed_tail
            if out:
                self.total += len(out)
                if self.total > self.limit:
                    raise InputError(
                        f"The gzip-compressed file expands to more than {self.limit // 2**20} MiB, more than "
                        "any image this server accepts holds. Upload the image itself (a plain or "
                        "tile-compressed FITS file) if it is really this large.",
                        code="decompressed_too_large",
                        http_status=413,
                    )
                return out
        return b""

    def _next_member(self) -> bool:
        """After a member's end: start the next one; False at the end (zero padding or junk)."""
        rest = self._inflater.unused_data.lstrip(b"\0")
        while not rest:
            more = self.handle.read(_CHUNK_BYTES)
            if not more:
                self._ended = True
                return False
            rest = more.lstrip(b"\0")
        if not rest.startswith(GZIP_MAGIC):
            self._ended = True  # trailing junk: astropy decides what it makes of it
            return False
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = rest
        return True


class _Content:
    """The file's (inflated) bytes, read forward only."""

    def __init__(self, handle: BinaryIO, *, gzipped: bool, limit: int):
        self.handle = handle
        self.inflater = _Inflater(handle, limit) if gzipped else None

    def read(self, n: int) -> bytes:
        if self.inflater is None:
            return self.handle.read(n)
        parts, size = [], 0
        while size < n and (part := self.inflater.read(min(n - size, _CHUNK_BYTES))):
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    def skip(self, n: int) -> int:
        """Move ``n`` bytes on; returns how many there were."""
        if self.inflater is None:
            start = self.handle.tell()
            end = self.handle.seek(0, 2)
            moved = min(n, end - start)
            self.handle.seek(start + moved)
            return moved
        moved = 0
        while moved < n and (part := self.inflater.read(min(n - moved, _CHUNK_BYTES))):
            moved += len(part)
        return moved


def _check_structure(path: Path, *, gzipped: bool, max_inflated: int) -> None:
    """Walk the HDUs from their raw cards; raise ``InputError`` for what astropy should never see."""
    with open(path, "rb") as handle:
        content = _Content(handle, gzipped=gzipped, limit=max_inflated)
        for index in range(MAX_HDUS):
            block = content.read(BLOCK_BYTES)
            if index > 0 and (len(block) < BLOCK_BYTES or not block.startswith(b"XTENSION=")):
                break  # the end, or padding after the last HDU
            cards = _structural_cards(content, block, index)
            size = _data_bytes(cards, index)
            present = content.skip(size)
            if present < size:
                raise _truncated(f"HDU {index} should hold {size} bytes of data but the file has {present}")
            content.skip(-size % BLOCK_BYTES)  # padding; a missing one at the end is tolerated
        if gzipped:
            # astropy inflates a gzip file to its end to learn its size: whatever follows counts too.
            while content.skip(_CHUNK_BYTES):
                pass


def _structural_cards(content: _Content, block: bytes, index: int) -> dict[str, str]:
    """The raw values of BITPIX, NAXISn, PCOUNT, GCOUNT and GROUPS of one header, read to its END."""
    values: dict[str, str] = {}
    for _ in range(MAX_HEADER_BLOCKS):
        if len(block) < BLOCK_BYTES:
            raise _truncated(f"it ends inside the header of HDU {index}")
        if sum(1 for byte in block if not 32 <= byte <= 126) > BLOCK_BYTES // 10:
            raise InputError(
                f"The header of HDU {index} is not FITS header text (it holds binary bytes). Check that the "
                "file is a FITS image and was uploaded whole.",
                code="unreadable_image",
            )
        for start in range(0, BLOCK_BYTES, CARD_BYTES):
            card = block[start : start + CARD_BYTES]
            keyword = card[:8].rstrip().decode("ascii", "replace")
            if keyword == "END":
                return values
            if card[8:10] == b"= " and keyword.startswith(("BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "GROUPS")):
                values.setdefault(keyword, card[10:].split(b"/", 1)[0].strip().decode("ascii", "replace"))
        block = content.read(BLOCK_BYTES)
    raise InputError(
        f"The header of HDU {index} has more than {MAX_HEADER_BLOCKS * BLOCK_BYTES // CARD_BYTES} cards. "
        "Remove the HISTORY and COMMENT cards (or other bulk) from the header and upload again.",
        code="header_too_large",
    )


def _data_bytes(cards: dict[str, str], index: int) -> int:
    """Bytes of data a header announces: |BITPIX|/8 * GCOUNT * (PCOUNT + prod NAXISn) (FITS 4.4.1)."""

    def whole(keyword: str, default: int | None = None) -> int:
        raw = cards.get(keyword)
        if raw is None and default is not None:
            return default
        try:
            return int(raw or "")
        except ValueError:
            raise InputError(
                f"The {keyword} card of HDU {index} is {raw!r}, not a whole number"
                + (" of bits per pixel" if keyword == "BITPIX" else "")
                + ". The file was not written as standard FITS; save it again from your software.",
                code="invalid_bitpix" if keyword == "BITPIX" else "unreadable_image",
            ) from None

    bitpix = whole("BITPIX")
    if bitpix not in VALID_BITPIX:
        raise InputError(
            f"BITPIX of HDU {index} is {bitpix}; FITS allows 8, 16, 32, 64, -32 or -64 bits per pixel. "
            "The file was not written as standard FITS; save it again from your software.",
            code="invalid_bitpix",
        )
    naxis = whole("NAXIS")
    if not 0 <= naxis <= 999:
        raise InputError(f"NAXIS of HDU {index} is {naxis}; FITS allows 0 to 999.", code="unreadable_image")
    if naxis == 0:
        return 0
    axes = [whole(f"NAXIS{i}") for i in range(1, naxis + 1)]
    if any(n < 0 for n in axes):
        raise InputError(
            f"HDU {index} declares a negative axis length ({axes}); the file is not valid FITS.",
            code="unreadable_image",
        )
    if axes[0] == 0 and cards.get("GROUPS") == "T":
        axes = axes[1:]  # random groups
    pcount, gcount = whole("PCOUNT", 0), whole("GCOUNT", 1)
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(axes))
