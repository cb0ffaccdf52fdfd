"""The size limits of an uploaded catalogue, enforced while its content streams in.

A compressed upload is inflated in chunks of ``CHUNK_BYTES`` and every chunk is checked before the
next one is inflated, so a small file that expands to millions of rows is refused after the first
few megabytes, in milliseconds, instead of being built, split and parsed whole first:

* text: lines (at most ``max_rows`` data rows plus ``MAX_HEADER_LINES`` header lines), line length
  (``MAX_LINE_BYTES``) and values (``MAX_VALUES`` whitespace-separated cells in all);
* FITS: each header's announced table rows (``NAXIS2``) and data size, read as soon as the header
  has arrived, before any of its data is inflated;
* both: the inflated size (``MAX_DECOMPRESSED_BYTES``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from pathlib import Path

from cpcs.errors import InputError
from cpcs.formats._sextractor_ascii import MAX_HEADER_LINES

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "MAX_LINE_BYTES",
    "MAX_VALUES",
    "is_gzip",
    "read_within_limits",
    "too_large",
    "too_many_rows",
]

#: Largest file accepted once decompressed; stops gzip bombs long before memory runs out.
MAX_DECOMPRESSED_BYTES = 200 * 1024 * 1024
#: Longest line of a text catalogue. A SExtractor row with a dozen apertures is about 1 kB.
MAX_LINE_BYTES = 64 * 1024
#: Most whitespace-separated values in a text catalogue (rows times columns, header included):
#: 200 000 stars of 25 values. It bounds what parsing the text costs.
MAX_VALUES = 5_000_000
#: Inflated bytes checked at a time.
CHUNK_BYTES = 256 * 1024

GZIP_MAGIC = b"\x1f\x8b"
FITS_MAGIC = b"SIMPLE  ="
_BLOCK = 2880
_CARD = 80
_MAX_HEADER_BLOCKS = 300


def too_large(size: int) -> InputError:
    return InputError(
        f"The catalogue is larger than {MAX_DECOMPRESSED_BYTES // (1024 * 1024)} MB "
        f"({'at least ' if size > MAX_DECOMPRESSED_BYTES else ''}{size / 1024 / 1024:.0f} MB uncompressed). "
        "Upload only the columns and stars needed (position, magnitude and its error).",
        code="catalogue_too_large",
    )


def too_many_rows(what: str, max_rows: int) -> InputError:
    return InputError(
        f"The catalogue has {what}; at most {max_rows} data rows are accepted. Keep only the useful "
        "stars (e.g. raise SExtractor's DETECT_THRESH or cut faint sources) and upload again.",
        code="too_many_rows",
    )


def read_within_limits(source: bytes | Path, *, max_rows: int) -> bytes:
    """The upload's content (inflated if gzip-compressed), refused as soon as a limit is passed.

    ``source`` is the upload itself or the file holding it; a file is read in chunks, so neither
    its compressed nor its inflated bytes are held beyond what the limits allow.

    Raises
    ------
    InputError
        ``catalogue_too_large``, ``too_many_rows``, ``line_too_long``, ``unreadable_catalogue``
        (corrupt, truncated or doubly compressed gzip).
    """
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    if size > MAX_DECOMPRESSED_BYTES:
        raise too_large(size)
    compressed = is_gzip(source)
    chunks = _inflate(_raw_chunks(source)) if compressed else _raw_chunks(source)
    first = next(chunks, b"")
    if compressed and first.startswith(GZIP_MAGIC):
        raise InputError(
            "The file is gzip-compressed twice. Decompress it once and upload again.",
            code="unreadable_catalogue",
        )
    limits: _FitsLimits | _TextLimits = (
        _FitsLimits(max_rows) if first.startswith(FITS_MAGIC) else _TextLimits(max_rows)
    )
    parts = [first]
    limits.feed(first)
    for chunk in chunks:
        limits.feed(chunk)
        parts.append(chunk)
    limits.finish()
    if isinstance(source, bytes) and not compressed:
        return source
    return b"".join(parts)


def is_gzip(source: bytes | Path) -> bool:
    if isinstance(source, bytes):
        return source.startswith(GZIP_MAGIC)
    with source.open("rb") as handle:
        return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def _raw_chunks(source: bytes | Path) -> Iterator[bytes]:
    if isinstance(source, bytes):
        view = memoryview(source)
        for start in range(0, len(source), CHUNK_BYTES):
            yield bytes(view[start : start + CHUNK_BYTES])
        return
    with source.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _inflate(raw: Iterator[bytes]) -> Iterator[bytes]:
    """Inflate one or more concatenated gzip members chunk by chunk, refusing output beyond the cap.

    Padding or junk after the last member is ignored, as gzip does.
    """
    total = 0
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    pending = b""
    while True:
        exhausted = False
        if not pending:
            more = next(raw, None)
            exhausted = more is None
            pending = more or b""
        try:
            chunk = inflater.decompress(pending, CHUNK_BYTES)
        except zlib.error as exc:
            raise InputError(
                f"The gzip-compressed file is corrupt ({exc}). Compress the catalogue again and re-upload.",
                code="unreadable_catalogue",
            ) from exc
        pending = inflater.unconsumed_tail
        total += len(chunk)
        if total > MAX_DECOMPRESSED_BYTES:
            raise too_large(total)
        if chunk:
            yield chunk
        if inflater.eof:
            rest = inflater.unused_data
            while len(rest) < len(GZIP_MAGIC) and (more := next(raw, None)):
                rest += more
            if not rest.startswith(GZIP_MAGIC):
                return
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            pending = rest
        elif exhausted and not chunk:
            raise InputError(
                "The gzip-compressed file is truncated (it ends before the compressed data does). "
                "Upload the complete file.",
                code="unreadable_catalogue",
            )


class _TextLimits:
    """Counts lines, line length and values of text as it arrives."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.max_lines = max_rows + MAX_HEADER_LINES + 1  # + a line of column names without '#'
        self.lines = 0
        self.values = 0
        self.carry = b""

    def feed(self, chunk: bytes) -> None:
        buffer = self.carry + chunk if self.carry else chunk
        cut = max(buffer.rfind(b"\n"), buffer.rfind(b"\r")) + 1
        self.carry = buffer[cut:]
        if len(self.carry) > MAX_LINE_BYTES:
            raise self._line_too_long(self.lines + buffer.count(b"\n", 0, cut) + 1)
        if cut:
            self._count(buffer[:cut])

    def finish(self) -> None:
        if self.carry.strip():
            self._count(self.carry + b"\n")

    def _count(self, text: bytes) -> None:
        lines = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        longest = max(range(len(lines)), key=lambda i: len(lines[i]))
        if len(lines[longest]) > MAX_LINE_BYTES:
            raise self._line_too_long(self.lines + longest + 1)
        self.lines += len(lines) - 1
        if self.lines > self.max_lines:
            raise too_many_rows(
                f"more than {self.max_lines} lines (rows, comments and blank lines; reading stopped at "
                f"line {self.lines})",
                self.max_rows,
            )
        self.values += len(text.split())
        if self.values > MAX_VALUES:
            raise InputError(
                f"The catalogue holds more than {MAX_VALUES} values (rows times columns, reading stopped "
                f"at line {self.lines}); at most {MAX_VALUES} are accepted. Upload only the columns and "
                "stars needed (position, magnitude and its error).",
                code="catalogue_too_large",
            )

    @staticmethod
    def _line_too_long(line: int) -> InputError:
        return InputError(
            f"Line {line} of the catalogue is longer than {MAX_LINE_BYTES // 1024} kB; a catalogue row holds "
            "one star's values, separated by spaces or tabs, and rows end with a line break. Check that "
            "this is a text catalogue with one star per line.",
            code="line_too_long",
        )


class _FitsLimits:
    """Reads each FITS header as it arrives and refuses tables that announce too many rows.

    Only announced sizes are checked: a header that cannot be read ends the checks, and the FITS
    reader then says what is wrong with the file. Only the bytes of the header being read are kept.
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.pending = bytearray()  # content from offset ``self.base`` on
        self.base = 0
        self.next_header = 0  # offset of the next header in the content
        self.done = False

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        self.pending += chunk
        while not self.done:
            skip = min(self.next_header - self.base, len(self.pending))
            if skip:
                del self.pending[:skip]
                self.base += skip
            if self.base < self.next_header or not self._header_arrived():
                return

    def finish(self) -> None:
        self.pending = bytearray()

    def _header_arrived(self) -> bool:
        """Read the header at ``next_header`` if it is all there; move on past its data."""
        cards: dict[str, str] = {}
        for block in range(_MAX_HEADER_BLOCKS):
            begin = block * _BLOCK
            if len(self.pending) < begin + _BLOCK:
                return False  # wait for more content
            if block == 0 and self.base and not self.pending.startswith(b"XTENSION="):
                self.done = True  # padding or junk after the last HDU
                return False
            for offset in range(begin, begin + _BLOCK, _CARD):
                card = bytes(self.pending[offset : offset + _CARD])
                keyword = card[:8].rstrip().decode("ascii", "replace")
                if keyword == "END":
                    self._check(cards, header_bytes=(block + 1) * _BLOCK)
                    return True
                if card[8:10] == b"= ":
                    cards.setdefault(keyword, card[10:].split(b"/", 1)[0].strip().decode("ascii", "replace"))
        self.done = True
        return False

    def _check(self, cards: dict[str, str], *, header_bytes: int) -> None:
        try:
            bitpix = abs(int(cards["BITPIX"]))
            axes = [int(cards[f"NAXIS{i}"]) for i in range(1, int(cards["NAXIS"]) + 1)]
            pcount = int(cards.get("PCOUNT", "0"))
            gcount = int(cards.get("GCOUNT", "1"))
        except (KeyError, ValueError):
            self.done = True
            return
        if any(n < 0 for n in axes) or pcount < 0 or gcount < 0:
            self.done = True
            return
        table = cards.get("XTENSION", "").strip("' ").upper() in ("BINTABLE", "TABLE")
        if table and len(axes) == 2 and axes[1] > self.max_rows:
            raise too_many_rows(f"a FITS table of {axes[1]} rows", self.max_rows)
        size = bitpix // 8 * gcount * (pcount + math.prod(axes)) if axes else 0
        end = self.next_header + header_bytes + size
        if end > MAX_DECOMPRESSED_BYTES:
            raise too_large(end)
        self.next_header = end + (-size % _BLOCK)
