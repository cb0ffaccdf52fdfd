"""The bad-input corpus: every malformed upload, built here from a few lines of code each.

Nothing binary is checked in: each case is generated from a small good catalogue or image, so a
reader sees in one line what is wrong with it. Three kinds of case:

* :func:`file_cases` — a file sent as the upload (legacy ``sexCat`` for catalogues, ``fitsFile``
  for images; REST v1 ``file`` for both), with the status and error code each interface answers;
* :func:`legacy_form_cases` and :func:`v1_form_cases` — a good catalogue with one bad form field.

``ALERT`` is the alert the test creates at ``FIELD_RA_DEG, FIELD_DEC_DEG``; the good catalogue and
image cover it, so a case fails only for the one thing it breaks.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import io
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from cpcs.simulation.catalogue_files import to_fits_ldac, to_fits_table
from cpcs.simulation.catalogue_simulator import simulate_field, to_sextractor_ascii
from tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG

ALERT = "ivo://Gaia16aye"
#: Settings the corpus assumes (the test's system uses them): small, so bombs stay small.
MAX_IMAGE_PIXELS = 1024 * 1024
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
#: Names a traversal would write to if a filename ever became a path (the test checks they do not).
ESCAPE_NAME = "cpcs-badinput-escape"

Kind = Literal["catalogue", "image"]
Interface = Literal["legacy", "v1"]


@dataclass(frozen=True)
class FileCase:
    """One malformed file: what each interface must answer (``v1_*`` when it differs)."""

    name: str
    field: Kind  # legacy: sexCat for a catalogue, fitsFile for an image; v1 finds out itself
    filename: str
    data: bytes
    status: int
    code: str | None  # None: any code (the answer comes from the HTTP layer, not from CPCS)
    v1_status: int | None = None
    v1_code: str | None = None
    interfaces: tuple[Interface, ...] = ("legacy", "v1")

    def expected(self, interface: Interface) -> tuple[int, str | None]:
        if interface == "v1":
            return self.v1_status or self.status, self.v1_code or self.code
        return self.status, self.code


@dataclass(frozen=True)
class FormCase:
    """A good catalogue with bad form fields (``None`` removes a field); ``code`` None: any code."""

    name: str
    fields: dict[str, str | None]
    status: int | tuple[int, ...]
    code: str | None
    files: list[tuple[str, tuple[str, bytes]]] | None = None  # None: the good catalogue
    extra: list[tuple[str, str]] = field(default_factory=list)  # repeated fields, sent as they are


# --------------------------------------------------------------------------------------------------
# The good inputs everything is made from.


@functools.cache
def good_catalogue() -> bytes:
    """A SExtractor ASCII_HEAD catalogue of 60 stars around the alert."""
    sky = simulate_field(7, n_stars=60, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
    return to_sextractor_ascii(sky.ra_deg, sky.dec_deg, sky.mag, sky.magerr).encode()


def _good_sky() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sky = simulate_field(7, n_stars=60, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, target="bright")
    return sky.ra_deg, sky.dec_deg, sky.mag, sky.magerr


def fits_table_catalogue() -> bytes:
    """The good catalogue's stars as a plain FITS table (no image header, so no time)."""
    return to_fits_table(*_good_sky())


def ldac_catalogue(image_header: dict[str, object]) -> bytes:
    """The good catalogue's stars as FITS-LDAC with the given image header cards."""
    return to_fits_ldac(*_good_sky(), image_header=image_header)


def _rows(lines: int | None = None) -> list[bytes]:
    return [line for line in good_catalogue().splitlines(keepends=True) if not line.startswith(b"#")][:lines]


def _header_lines() -> bytes:
    return b"".join(line for line in good_catalogue().splitlines(keepends=True) if line.startswith(b"#"))


def _columns(*names: str) -> bytes:
    return b"".join(f"#   {i} {name:<22s} some column\n".encode() for i, name in enumerate(names, 1))


def _table(header: bytes, values: Callable[[int], str], n: int = 30) -> bytes:
    return header + b"".join(values(i).encode() + b"\n" for i in range(n))


def _star(i: int) -> tuple[float, float, float, float]:
    """Magnitude, error, RA, Dec of a made-up star ``i`` next to the alert."""
    return -5.0 - 0.05 * i, 0.05, FIELD_RA_DEG + 1e-3 * (i % 7), FIELD_DEC_DEG + 1e-3 * (i % 5)


def wcs_header(
    *, ra_deg: float = FIELD_RA_DEG, dec_deg: float = FIELD_DEC_DEG, scale_deg: float = 0.6 / 3600
) -> fits.Header:
    header = fits.Header()
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [64.5, 64.5]
    wcs.wcs.cdelt = [-scale_deg, scale_deg]
    header.update(wcs.to_header())
    return header


def image_header(**wcs: float) -> fits.Header:
    header = wcs_header(**wcs)
    header["DATE-OBS"] = "2016-12-15T19:40:00"
    header["EXPTIME"] = 60.0
    header["FILTER"] = "R"
    return header


IMAGE = np.random.default_rng(1).normal(1000, 10, (128, 128)).astype(np.float32)


def fits_bytes(data: np.ndarray | None, header: fits.Header | None = None) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buffer)
    return buffer.getvalue()


@functools.cache
def good_image() -> bytes:
    return fits_bytes(IMAGE, image_header())


def _set_card(data: bytes, keyword: str, value: str) -> bytes:
    """Overwrite one header card in place (for cards astropy would refuse to write)."""
    start = data.index(f"{keyword:<8s}= ".encode())
    card = f"{keyword:<8s}= {value:>20s}".ljust(80).encode()
    return data[:start] + card + data[start + 80 :]


def _without(header: fits.Header, *keywords: str) -> fits.Header:
    copy = header.copy()
    for keyword in keywords:
        del copy[keyword]
    return copy


def _with(header: fits.Header, **cards: object) -> fits.Header:
    copy = header.copy()
    for keyword, value in cards.items():
        copy[keyword.replace("_", "-")] = value
    return copy


def _with_cd(header: fits.Header, cd: tuple[float, float, float, float]) -> fits.Header:
    copy = _without(header, *(k for k in header if k.startswith(("CDELT", "PC"))))
    copy["CD1_1"], copy["CD1_2"], copy["CD2_1"], copy["CD2_2"] = cd
    return copy


def _pointing_only(scale_arcsec: float) -> fits.Header:
    header = _without(image_header(), *wcs_header())
    header["RA"], header["DEC"], header["PIXSCALE"] = FIELD_RA_DEG, FIELD_DEC_DEG, scale_arcsec
    return header


def _huge_header(cards: int) -> fits.Header:
    header = image_header()
    for _ in range(cards):
        header.add_history("x" * 60)
    return header


def _gzip_stream(*parts: bytes, zeros: int = 0) -> bytes:
    """Gzip of ``parts`` then ``zeros`` zero bytes, compressed as they are made (never held whole)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(part) for part in parts]
    block = bytes(1 << 20)
    while zeros > 0:
        out.append(compressor.compress(block[: min(zeros, len(block))]))
        zeros -= len(block)
    out.append(compressor.flush())
    return b"".join(out)


def _corrupt_gzip(data: bytes) -> bytes:
    raw = bytearray(gzip.compress(data))
    for i in range(20, min(len(raw) - 8, 400), 7):
        raw[i] ^= 0xA5
    return bytes(raw)


def _zip(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def _rice(data: np.ndarray, header: fits.Header) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=header)]).writeto(buffer)
    return buffer.getvalue()


def _table_only(*columns: fits.Column) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(list(columns))]).writeto(buffer)
    return buffer.getvalue()


def _big_image_header(nx: int, ny: int, bitpix: int) -> bytes:
    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, bitpix, 2
    header["NAXIS1"], header["NAXIS2"] = nx, ny
    header.update(image_header())
    return header.tostring().encode()


# --------------------------------------------------------------------------------------------------
# Files.


def catalogue_cases() -> list[FileCase]:
    good = good_catalogue()
    rows = _rows()
    header = _header_lines()
    far = simulate_field(3, n_stars=40, ra_deg=10.0, dec_deg=-40.0)
    far_text = to_sextractor_ascii(far.ra_deg, far.dec_deg, far.mag, far.magerr).encode()
    mag_err_ra_dec = _columns("MAG_AUTO", "MAGERR_AUTO", "ALPHA_J2000", "DELTA_J2000")
    mag, err, ra, dec = (np.array(v) for v in zip(*(_star(i) for i in range(300)), strict=True))
    fits_catalogue = to_fits_table(ra, dec, mag, err)
    spaces_bomb = 201 * 1024 * 1024

    def case(
        name: str,
        data: bytes,
        code: str | None,
        *,
        status: int = 422,
        filename: str = "frame.cat",
        v1_code: str | None = None,
        interfaces: tuple[Interface, ...] = ("legacy", "v1"),
    ) -> FileCase:
        return FileCase(
            name, "catalogue", filename, data, status, code, v1_code=v1_code, interfaces=interfaces
        )

    return [
        case("zero bytes", b"", "empty_file"),
        case("only whitespace", b"  \n\t\n   \n", "empty_catalogue"),
        case("only a header, no rows", header, "empty_catalogue"),
        case("random binary junk", np.random.default_rng(5).bytes(4096), "unreadable_catalogue"),
        case("NUL bytes inside the text", good[:300] + b"\x00\x00\x00" + good[300:], "unreadable_catalogue"),
        case(
            "control characters in a row", good[:400] + b"\x1b[31m\x07" + good[400:], "unreadable_catalogue"
        ),
        case(
            "UTF-16 with a BOM",
            codecs.BOM_UTF16_LE + good.decode().encode("utf-16-le"),
            "unreadable_catalogue",
        ),
        case("UTF-16 without a BOM", good.decode().encode("utf-16-be"), "unreadable_catalogue"),
        case("Latin-1 byte in a comment", b"# observed at Ond\xf8ejov\n" + good, "unreadable_catalogue"),
        case("Windows-1252 quotes", b"# \x93frame\x94\n" + good, "unreadable_catalogue"),
        case(
            "duplicate magnitude columns",
            _columns("MAG_AUTO", "MAG_AUTO", "MAGERR_AUTO", "ALPHA_J2000", "DELTA_J2000")
            + b"".join(r.split(maxsplit=1)[0] + b" " + r for r in rows),
            "duplicate_columns",
        ),
        case(
            "duplicate coordinate columns",
            _columns("MAG_AUTO", "MAGERR_AUTO", "ALPHA_J2000", "ALPHA_J2000", "DELTA_J2000")
            + b"".join(r.rstrip(b"\n") + b" " + r.split()[2] + b"\n" for r in rows),
            "duplicate_columns",
        ),
        case(
            "no magnitude column",
            _table(_columns("ALPHA_J2000", "DELTA_J2000"), lambda i: "295.0 30.1"),
            "missing_columns",
        ),
        case(
            "pixel coordinates only",
            _table(_columns("MAG_AUTO", "MAGERR_AUTO", "X_IMAGE", "Y_IMAGE"), lambda i: f"-5 0.05 {i} {i}"),
            "missing_columns",
        ),
        case(
            "RA beyond 360",
            _table(mag_err_ra_dec, lambda i: f"-5 0.05 {400 + i} 30.1"),
            "coordinates_out_of_range",
        ),
        case(
            "Dec beyond 90",
            _table(mag_err_ra_dec, lambda i: f"-5 0.05 295.0 {95 + i}"),
            "coordinates_out_of_range",
        ),
        case(
            "negative RA",
            _table(mag_err_ra_dec, lambda i: f"-5 0.05 {-10 - i} 30.1"),
            "coordinates_out_of_range",
        ),
        case("coordinates NaN", _table(mag_err_ra_dec, lambda i: "-5 0.05 nan nan"), "too_few_stars"),
        case(
            "every magnitude 99",
            _table(mag_err_ra_dec, lambda i: f"99.0 99.0 {_star(i)[2]} {_star(i)[3]}"),
            "too_few_stars",
        ),
        case(
            "every error zero",
            _table(mag_err_ra_dec, lambda i: f"-5 0.0 {_star(i)[2]} {_star(i)[3]}"),
            "too_few_stars",
        ),
        case("three stars", header + b"".join(rows[:3]), "too_few_stars"),
        case(
            "words in number columns",
            _table(mag_err_ra_dec, lambda i: "bright faint here there"),
            "malformed_rows",
        ),
        case("decimal commas", _table(mag_err_ra_dec, lambda i: "-5,1 0,05 295,0 30,1"), "malformed_rows"),
        case("rows shorter than the header", _table(mag_err_ra_dec, lambda i: "-5.0 0.05"), "malformed_rows"),
        case("far from the alert", far_text, "catalogue_not_near_target"),
        case("a VOTable", b'<?xml version="1.0"?>\n<VOTABLE><RESOURCE/></VOTABLE>\n', "unreadable_catalogue"),
        case(
            "an HTML page",
            b"<!doctype html><html><body>502 Bad Gateway</body></html>",
            "unreadable_catalogue",
        ),
        case("a ZIP archive", _zip("frame.cat", good), "unreadable_catalogue", filename="frame.zip"),
        case("a PNG picture", b"\x89PNG\r\n\x1a\n" + bytes(64), "unreadable_catalogue", filename="frame.png"),
        case("a PDF", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "unreadable_catalogue"),
        case(
            "gzip bomb (201 MB of blank lines)",
            _gzip_stream(header, *[(b" " * 60_000 + b"\n") * 100] * (spaces_bomb // 6_000_100 + 1)),
            "catalogue_too_large",
            filename="frame.cat.gz",
        ),
        case(
            "gzip bomb (one line of 201 MB)",
            _gzip_stream(header, *[b" " * (1 << 20)] * (spaces_bomb >> 20)),
            "line_too_long",
            filename="frame.cat.gz",
        ),
        case(
            "gzip of 5 million identical rows",
            _gzip_stream(header, *[rows[0] * 100_000] * 50),
            "too_many_rows",
            filename="frame.cat.gz",
        ),
        case(
            "gzip inside gzip",
            gzip.compress(gzip.compress(good)),
            "unreadable_catalogue",
            filename="f.cat.gz",
        ),
        case("truncated gzip", gzip.compress(good)[:-200], "unreadable_catalogue", filename="frame.cat.gz"),
        case("corrupt gzip", _corrupt_gzip(good), "unreadable_catalogue", filename="frame.cat.gz"),
        case(
            "FITS table cut in half",
            fits_catalogue[: len(fits_catalogue) // 2],
            "corrupt_fits",
            filename="frame.fits",
            v1_code="truncated_image",
        ),
        case("FITS with no table", fits_bytes(None), "no_table_in_fits", filename="frame.fits"),
        case(
            "FITS table without coordinates",
            _table_only(
                fits.Column("MAG_AUTO", "E", array=[1.0] * 9),
                fits.Column("MAGERR_AUTO", "E", array=[0.1] * 9),
            ),
            "missing_columns",
            filename="frame.fits",
        ),
        case(
            "an image sent as a catalogue",
            good_image(),
            "no_table_in_fits",
            filename="frame.fits",
            interfaces=("legacy",),  # v1 tells images from catalogues by content: this image is fine
        ),
        case(
            "XTENSION without a primary header", b"XTENSION= 'BINTABLE'".ljust(2880), "unreadable_catalogue"
        ),
        case(
            "two hundred thousand comment lines",
            b"# padding\n" * 200_000 + good,
            "malformed_header",
        ),
        case("one line of 2 MB", b"1" * (2 * 1024 * 1024), "line_too_long"),
        case(
            "more rows than allowed",
            header + rows[0] * 200_001,
            "too_many_rows",
        ),
        case(
            "filename climbing out with ../",
            np.random.default_rng(6).bytes(512),
            "unreadable_catalogue",
            filename=f"../../../../{ESCAPE_NAME}.cat",
        ),
        case("absolute filename", b"", "empty_file", filename=f"/tmp/{ESCAPE_NAME}.cat"),
        case(
            "Windows path filename",
            b"\x00junk",
            "unreadable_catalogue",
            filename=f"C:\\..\\..\\{ESCAPE_NAME}.cat",
        ),
        case("filename of dots only", b"", "empty_file", filename=".."),
        case("filename of 2000 characters", b"", "empty_file", filename="a" * 2000 + ".cat"),
        # A part header beyond python-multipart's 4 KiB: the form parser refuses the request.
        case("filename of 5000 characters", b"", None, status=400, filename="a" * 5000 + ".cat"),
        case(
            "a body past the request limit",
            b"#" + b" " * (MAX_UPLOAD_BYTES + 512 * 1024),
            None,  # the HTTP door (request_too_large) or the file store (file_too_large)
            status=413,
        ),
        case(
            "file over the upload limit",
            b"#" + b" " * MAX_UPLOAD_BYTES,
            "file_too_large",
            status=413,
        ),
    ]


def image_cases() -> list[FileCase]:
    good = good_image()
    table = _table_only(fits.Column("A", "E", array=[1.0]))
    rice = _rice(IMAGE, image_header())

    def case(
        name: str,
        data: bytes,
        code: str,
        *,
        status: int = 422,
        filename: str = "frame.fits",
        v1_code: str | None = None,
    ) -> FileCase:
        return FileCase(name, "image", filename, data, status, code, v1_code=v1_code)

    return [
        case("zero bytes", b"", "empty_file"),
        case(
            "text, not FITS", b"hello, this is not an image\n", "unreadable_image", v1_code="missing_columns"
        ),
        case("cut in half", good[: len(good) // 2], "truncated_image"),
        case("cut inside the header", good[:1000], "truncated_image"),
        case("header then binary junk", good[:80] + np.random.default_rng(7).bytes(5680), "unreadable_image"),
        case("BITPIX 12", _set_card(good, "BITPIX", "12"), "invalid_bitpix"),
        case("BITPIX a word", _set_card(good, "BITPIX", "'abc'"), "invalid_bitpix"),
        case("NAXIS1 negative", _set_card(good, "NAXIS1", "-128"), "unreadable_image"),
        case("1-D data", fits_bytes(np.zeros(100, np.float32), image_header()), "image_not_2d"),
        case("3-D data", fits_bytes(np.zeros((3, 32, 32), np.float32), image_header()), "image_not_2d"),
        case(
            "no data at all", fits_bytes(None, image_header()), "no_image_in_fits", v1_code="no_table_in_fits"
        ),
        case("only a table", table, "no_image_in_fits", v1_code="missing_columns"),
        case("no time", fits_bytes(IMAGE, _without(image_header(), "DATE-OBS")), "missing_time"),
        case(
            "a date that is not one",
            fits_bytes(IMAGE, _with(image_header(), DATE_OBS="yesterday")),
            "missing_time",
        ),
        case("no exposure", fits_bytes(IMAGE, _without(image_header(), "EXPTIME")), "missing_exposure"),
        case(
            "negative exposure", fits_bytes(IMAGE, _with(image_header(), EXPTIME=-60.0)), "missing_exposure"
        ),
        case(
            "no WCS, no pointing", fits_bytes(IMAGE, _without(image_header(), *wcs_header())), "no_astrometry"
        ),
        case(
            "singular CD matrix",
            fits_bytes(IMAGE, _with_cd(image_header(), (0.0, 0.0, 0.0, 0.0))),
            "invalid_wcs",
        ),
        case(
            "parallel CD axes",
            fits_bytes(IMAGE, _with_cd(image_header(), (1e-4, 1e-4, 1e-4, 1e-4))),
            "invalid_wcs",
        ),
        case("pixel scale of a degree", fits_bytes(IMAGE, image_header(scale_deg=1.0)), "absurd_pixel_scale"),
        case(
            "pixel scale of 0.2 degrees", fits_bytes(IMAGE, image_header(scale_deg=0.2)), "absurd_pixel_scale"
        ),
        case("PIXSCALE of half a degree", fits_bytes(IMAGE, _pointing_only(1800.0)), "absurd_pixel_scale"),
        case(
            "pixel scale of a nano-degree",
            fits_bytes(IMAGE, image_header(scale_deg=1e-9)),
            "absurd_pixel_scale",
        ),
        case("CRVAL2 beyond the pole", _set_card(good, "CRVAL2", "120.0"), "invalid_wcs"),
        case("CRVAL1 not a number", _set_card(good, "CRVAL1", "'east'"), "image_not_near_target"),
        case(
            "the alert is not on the image",
            fits_bytes(IMAGE, image_header(ra_deg=100.0, dec_deg=-20.0)),
            "image_not_near_target",
        ),
        case("a header of 12 000 cards", fits_bytes(IMAGE, _huge_header(12_000)), "header_too_large"),
        case(
            "gzip bomb: zeros after the image",
            _gzip_stream(good, zeros=80 * 1024 * 1024),
            "decompressed_too_large",
            status=413,
            filename="frame.fits.gz",
        ),
        case(
            "gzip of an image beyond the pixel limit",
            _gzip_stream(_big_image_header(2048, 2048, 8), zeros=2048 * 2048),
            "image_too_large",
            status=413,
            filename="frame.fits.gz",
        ),
        case("truncated gzip", gzip.compress(good)[:-300], "truncated_image", filename="frame.fits.gz"),
        case("gzip of a cut file", gzip.compress(good[:20000]), "truncated_image", filename="frame.fits.gz"),
        case(
            "corrupt gzip",
            _corrupt_gzip(good),
            "unreadable_image",
            filename="frame.fits.gz",
            v1_code="unreadable_catalogue",  # not recognisable as FITS, so read as a catalogue
        ),
        case("tile-compressed, cut short", rice[: len(rice) - 3000], "truncated_image", filename="frame.fz"),
        case(
            "tile-compressed, beyond the pixel limit",
            _set_card(_set_card(rice, "ZNAXIS1", "5000"), "ZNAXIS2", "5000"),
            "image_too_large",
            status=413,
            filename="frame.fz",
        ),
        case(
            "filename climbing out with ../",
            good[:1000],
            "truncated_image",
            filename=f"../../../../{ESCAPE_NAME}.fits",
        ),
    ]


def file_cases() -> list[FileCase]:
    return catalogue_cases() + image_cases()


# --------------------------------------------------------------------------------------------------
# Form fields.


#: Alert names that must be refused (``invalid_alert_name``) wherever a name is given.
BAD_ALERT_NAMES: tuple[tuple[str, str], ...] = (
    ("a line break forging a log line", "ivo://Gaia16aye\n2026-01-01 00:00:00 INFO cpcs: admin logged in"),
    ("a carriage return", "ivo://Gaia16aye\rX"),
    ("NUL", "Gaia16\x00aye"),
    ("a tab", "Gaia16\taye"),
    ("an escape sequence", "Gaia16aye\x1b[2J"),
    ("a right-to-left override", "ivo://Gaia\u202eeya61"),
    ("a zero-width space", "ivo://Gaia16\u200baye"),
    ("a zero-width joiner", "Gaia16\u200daye"),
    ("a byte-order mark inside", "Gaia\ufeff16aye"),
    ("a line separator", "Gaia16aye\u2028INFO forged"),
    ("the scheme alone", "ivo://"),
    ("the scheme and slashes", "ivo:////"),
    ("the full-width scheme alone", "\uff49\uff56\uff4f://"),
)
#: A full-width look-alike of ``ALERT``: NFKC makes it the same name.
FULL_WIDTH_ALERT = "\uff49\uff56\uff4f://\uff27\uff41\uff49\uff41\uff11\uff16aye"


def legacy_form_cases() -> list[FormCase]:
    """Fields of ``/followup/cgi/upload`` (the good form is in the test) made wrong one at a time."""
    too_many = [(f"extra{i}", "1") for i in range(60)]
    return [
        FormCase("MJD as words", {"MJD": "yesterday"}, 422, "invalid_mjd"),
        FormCase("JD instead of MJD", {"MJD": "2457737.81755"}, 422, "invalid_mjd"),
        FormCase("negative MJD", {"MJD": "-5"}, 422, "invalid_mjd"),
        FormCase("MJD NaN", {"MJD": "nan"}, 422, "invalid_mjd"),
        FormCase("MJD infinite", {"MJD": "1e999"}, 422, "invalid_mjd"),
        # A point needs a time: an ASCII catalogue has no header to take it from.
        FormCase("no MJD", {"MJD": None}, 422, "missing_time"),
        FormCase("empty MJD", {"MJD": ""}, 422, "missing_time"),
        FormCase("blank MJD", {"MJD": "   "}, 422, "missing_time"),
        FormCase(
            "no MJD, a FITS table (no image header)",
            {"MJD": None},
            422,
            "missing_time",
            files=[("sexCat", ("frame.fits", fits_table_catalogue()))],
        ),
        FormCase(
            "no MJD, an LDAC catalogue whose image header has no time",
            {"MJD": None},
            422,
            "missing_time",
            files=[("sexCat", ("frame.ldac", ldac_catalogue({"EXPTIME": 60.0})))],
        ),
        FormCase("negative exposure", {"expTime": "-120"}, 422, "invalid_exptime"),
        FormCase("exposure as words", {"expTime": "two minutes"}, 422, "invalid_exptime"),
        FormCase("forceFilter without a band", {"forceFilter": "APASS"}, 422, "invalid_force_filter"),
        FormCase("forceFilter with two slashes", {"forceFilter": "APASS/V/R"}, 422, "invalid_force_filter"),
        FormCase("forceFilter without a survey", {"forceFilter": "/V"}, 422, "invalid_force_filter"),
        FormCase("matchDist as words", {"matchDist": "near"}, 422, "invalid_matchdist"),
        FormCase("matchDist zero", {"matchDist": "0"}, 422, "invalid_match_radius"),
        FormCase("matchDist negative", {"matchDist": "-2"}, 422, "invalid_match_radius"),
        FormCase("matchDist of a billion arcsec", {"matchDist": "1e9"}, 422, "invalid_match_radius"),
        FormCase("matchDist NaN", {"matchDist": "nan"}, 422, "invalid_matchdist"),
        FormCase("no EventID", {"EventID": None}, 422, "invalid_request"),
        FormCase("empty EventID", {"EventID": ""}, 422, "invalid_request"),
        FormCase("unknown EventID", {"EventID": "ivo://Gaia99zzz"}, 404, "unknown_alert"),
        *(
            FormCase(f"EventID with {what}", {"EventID": name}, 422, "invalid_alert_name")
            for what, name in BAD_ALERT_NAMES
        ),
        FormCase("comment of 10 000 characters", {"comment": "x" * 10_000}, 422, "invalid_request"),
        FormCase("dryRun neither yes nor no", {"dryRun": "maybe"}, 422, "invalid_flag"),
        FormCase("outputFormat xml", {"outputFormat": "xml"}, 422, "invalid_output_format"),
        FormCase("no file", {}, 422, "missing_file", files=[]),
        FormCase(
            "two files",
            {},
            422,
            "two_files",
            files=[("sexCat", ("a.cat", good_catalogue())), ("fitsFile", ("a.fits", good_image()))],
        ),
        FormCase("no token", {"hashtag": None}, 401, "not_authenticated"),
        FormCase("sixty extra fields", {}, 400, None, extra=too_many),
        FormCase("a field of 100 KB", {"comment": "x" * 100_000}, (400, 413, 422), None),
    ]


def v1_form_cases() -> list[FormCase]:
    """Fields of ``POST /api/v1/uploads`` made wrong one at a time."""
    return [
        FormCase("mjd as words", {"mjd": "yesterday"}, 422, "invalid_request"),
        FormCase("JD instead of MJD", {"mjd": "2457737.81755"}, 422, "invalid_mjd"),
        FormCase("negative mjd", {"mjd": "-5"}, 422, "invalid_mjd"),
        FormCase("mjd NaN", {"mjd": "nan"}, 422, "invalid_mjd"),
        FormCase("mjd infinite", {"mjd": "1e999"}, 422, "invalid_mjd"),
        FormCase("no mjd", {"mjd": None}, 422, "missing_time"),
        FormCase("empty mjd", {"mjd": ""}, 422, "missing_time"),
        FormCase(
            "no mjd, a FITS table (no image header)",
            {"mjd": None},
            422,
            "missing_time",
            files=[("file", ("frame.fits", fits_table_catalogue()))],
        ),
        FormCase(
            "no mjd, an LDAC catalogue whose image header has no time",
            {"mjd": None},
            422,
            "missing_time",
            files=[("file", ("frame.ldac", ldac_catalogue({"EXPTIME": 60.0})))],
        ),
        FormCase("negative exposure", {"exptime_s": "-120"}, 422, "invalid_request"),
        FormCase("infinite exposure", {"exptime_s": "inf"}, 422, "invalid_exptime"),
        FormCase("force_filter without a band", {"force_filter": "APASS"}, 422, "invalid_force_filter"),
        FormCase("force_filter with two slashes", {"force_filter": "a/b/c"}, 422, "invalid_force_filter"),
        FormCase("match radius zero", {"match_radius_arcsec": "0"}, 422, "invalid_request"),
        FormCase("match radius of a billion", {"match_radius_arcsec": "1e9"}, 422, "invalid_request"),
        FormCase("match radius as words", {"match_radius_arcsec": "near"}, 422, "invalid_request"),
        FormCase("no alert", {"alert": None}, 422, "invalid_request"),
        FormCase("unknown alert", {"alert": "ivo://Gaia99zzz"}, 404, "unknown_alert"),
        *(
            FormCase(f"alert with {what}", {"alert": name}, 422, "invalid_alert_name")
            for what, name in BAD_ALERT_NAMES
        ),
        FormCase("comment of 10 000 characters", {"comment": "x" * 10_000}, 422, "invalid_request"),
        FormCase("filter of 100 characters", {"filter": "V" * 100}, 422, "invalid_request"),
        FormCase("dry_run neither yes nor no", {"dry_run": "maybe"}, 422, "invalid_request"),
        FormCase("aperture index -1", {"aperture_index": "-1"}, 422, "invalid_request"),
        FormCase("aperture index 10 000", {"aperture_index": "10000"}, 422, "invalid_request"),
        FormCase("unknown magnitude column", {"magnitude_column": "MAG_NOPE"}, 422, "missing_columns"),
        FormCase("unknown instrument", {"instrument": "Hubble"}, (404, 422), None),
        FormCase("no file", {}, 422, "invalid_request", files=[]),
        FormCase(
            "two files in one field",
            {},
            400,
            None,
            files=[("file", ("a.cat", good_catalogue())), ("file", ("b.cat", good_catalogue()))],
        ),
    ]
