"""Every malformed upload is an InputError with a machine-readable code and a message saying what to fix."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from cpcs.errors import InputError
from cpcs.formats import _upload_limits, source_catalogue
from cpcs.formats.source_catalogue import read_source_catalogue

DATA = Path(__file__).parent / "data"
BAD = DATA / "bad"


def error_for(data: bytes, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as info:
        read_source_catalogue(data, **kwargs)  # type: ignore[arg-type]
    error = info.value
    assert error.http_status == 422
    assert error.message and not error.message[0].islower()  # a sentence for a person
    return error


def assert_mentions(message: str, *fragments: str) -> None:
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in {message!r}"


# (file in data/bad, expected code, fragments the message must contain: what is wrong and how to fix it)
CORPUS = [
    ("empty.cat", "empty_catalogue", ["empty", "ASCII_HEAD"]),
    ("blank_lines.cat", "empty_catalogue", ["empty"]),
    ("header_only.cat", "empty_catalogue", ["no data rows", "one line per detected star"]),
    ("comments_only.cat", "empty_catalogue", ["no data rows"]),
    ("binary_junk.bin", "unreadable_catalogue", ["binary", "ASCII_HEAD", "FITS_LDAC"]),
    ("latin1.cat", "unreadable_catalogue", ["not UTF-8", "line 1", "save it as plain ASCII/UTF-8"]),
    ("utf16.cat", "unreadable_catalogue", ["UTF-16", "UTF-8"]),
    ("control_characters.cat", "unreadable_catalogue", ["control characters", "line 7"]),
    ("votable.xml", "unreadable_catalogue", ["XML", "Accepted formats"]),
    ("image.png", "unreadable_catalogue", ["PNG image", "image upload"]),
    ("catalogue.zip", "unreadable_catalogue", ["ZIP archive", "gzip"]),
    ("comma_separated.csv", "unreadable_catalogue", ["commas", "spaces or tabs"]),
    ("no_header.cat", "missing_columns", ["no header", "ASCII_HEAD", "#   3 ALPHA_J2000"]),
    ("pixel_positions_only.cat", "missing_columns", ["ALPHA_J2000", "X_WORLD", "pixel positions", ".param"]),
    ("no_magerr.cat", "missing_columns", ["MAGERR_AUTO", "MAG_APER", "not its error column"]),
    ("no_magnitude.fits", "missing_columns", ["MAG_AUTO with MAGERR_AUTO", "FLUX_AUTO"]),
    (
        "duplicate_columns.cat",
        "duplicate_columns",
        ["more than one column called ALPHA_J2000", "distinct name"],
    ),
    ("duplicate_aperture.cat", "duplicate_columns", ["MAG_APER_2", "twice", "distinct name"]),
    ("header_out_of_order.cat", "malformed_header", ["out of order", "line 3", "larger column number"]),
    ("header_declares_more_columns.cat", "malformed_rows", ["6 columns", "4 values", "re-export"]),
    ("names_count_mismatch.cat", "malformed_rows", ["5 columns", "4 values", "one name per column"]),
    ("mostly_junk.cat", "malformed_rows", ["5 of 7", "line 7", "numeric values"]),
    ("decimal_comma.cat", "malformed_rows", ["7 of 7", "line 5", "not a comma"]),
    ("sexagesimal_with_spaces.cat", "malformed_rows", ["DELTA_J2000", "5 values", "colons"]),
    ("vector_ra.fits", "malformed_rows", ["ALPHA_J2000", "2 values"]),
    ("pixel_coordinates_as_radec.cat", "coordinates_out_of_range", ["7 of 7", "pixel positions", "degrees"]),
    ("dec_out_of_range.cat", "coordinates_out_of_range", ["Dec beyond", "swapped"]),
    ("negative_ra.cat", "coordinates_out_of_range", ["[0, 360)", "negative"]),
    ("all_failed.cat", "too_few_stars", ["Only 0 usable stars", "7 failed measurements", "at least 5"]),
    ("three_stars.cat", "too_few_stars", ["Only 3 usable stars", "at least 5"]),
    (
        "nan_values.cat",
        "too_few_stars",
        ["Only 3 usable", "4 rows with NaN or infinite values", "at least 5"],
    ),
    ("bad_errors.cat", "too_few_stars", ["Only 2 usable", "errors <= 0 or >= 9", "at least 5"]),
    ("image.fits", "no_table_in_fits", ["an image (4 x 3 pixels)", "image upload", "FITS_LDAC"]),
]


@pytest.mark.parametrize(("name", "code", "fragments"), CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_corpus(name: str, code: str, fragments: list[str]) -> None:
    error = error_for((BAD / name).read_bytes(), filename=name)
    assert error.code == code, error.message
    assert_mentions(error.message, *fragments)


@pytest.mark.parametrize(("name", "code", "fragments"), CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_corpus_gzipped_gives_the_same_answer(name: str, code: str, fragments: list[str]) -> None:
    data = (BAD / name).read_bytes()
    if not data.strip():
        code, fragments = "empty_catalogue", ["decompresses to nothing"]
    error = error_for(gzip.compress(data))
    assert error.code == code, error.message
    assert_mentions(error.message, *fragments)


# --- row limits ------------------------------------------------------------------------------------


def test_too_many_text_rows() -> None:
    error = error_for((DATA / "sextractor_auto.cat").read_bytes(), max_rows=5)
    assert error.code == "too_many_rows"
    assert_mentions(error.message, "8 data rows", "at most 5", "DETECT_THRESH")


def test_too_many_fits_rows() -> None:
    error = error_for((DATA / "ldac.fits").read_bytes(), max_rows=5)
    assert error.code == "too_many_rows"
    assert_mentions(error.message, "8 rows", "at most 5")


def test_min_stars_is_reported_in_the_message() -> None:
    error = error_for((DATA / "sextractor_auto.cat").read_bytes(), min_stars=10)
    assert error.code == "too_few_stars"
    assert_mentions(
        error.message, "Only 7 usable stars found in 8 rows", "1 failed measurements", "at least 10"
    )


# --- FITS damage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "keep"),
    [
        ("table.fits", 100),  # inside the primary header
        ("table.fits", 2880 + 40),  # inside the table header
        ("table.fits", 5760 + 100),  # inside the table data
        ("ldac.fits", 5760 + 100),  # inside the LDAC_IMHEAD data, LDAC_OBJECTS lost
        ("ldac.fits", 8640 + 80),  # inside the LDAC_OBJECTS header
        ("ldac.fits", 11520 + 200),  # inside the LDAC_OBJECTS data
    ],
)
def test_truncated_fits(name: str, keep: int) -> None:
    data = (DATA / name).read_bytes()
    error = error_for(data[:keep])
    assert error.code == "corrupt_fits", error.message
    assert_mentions(error.message, "damaged", "re-upload the complete file")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", [b"-1", b"- 1", b"1.5", b"T"])
def test_fits_with_nonsense_size_keyword(value: bytes) -> None:
    # A negative NAXIS2 once made astropy re-read the same headers forever, eating all memory.
    data = bytearray((DATA / "ldac.fits").read_bytes())
    card = data.index(b"NAXIS2  =", 2880)  # in the LDAC_IMHEAD header
    data[card + 10 : card + 30] = value.rjust(20)
    error = error_for(bytes(data))
    assert error.code == "corrupt_fits", error.message
    assert_mentions(error.message, "damaged", "re-upload")


def test_fits_without_any_extension() -> None:
    buffer = io.BytesIO()
    fits.PrimaryHDU().writeto(buffer)
    error = error_for(buffer.getvalue())
    assert error.code == "no_table_in_fits"
    assert_mentions(error.message, "no table", "image upload")


def test_fits_extension_without_primary_header() -> None:
    data = (DATA / "table.fits").read_bytes()[2880:]
    error = error_for(data)
    assert error.code == "unreadable_catalogue"
    assert_mentions(error.message, "without its primary header", "SIMPLE")


def test_file_named_fits_that_is_not_fits() -> None:
    error = error_for(b"\x00\x01garbage" * 10, filename="field.fits")
    assert error.code == "unreadable_catalogue"
    assert_mentions(error.message, "'field.fits'", "SIMPLE  =")


# --- gzip damage -----------------------------------------------------------------------------------


def test_truncated_gzip() -> None:
    packed = gzip.compress((DATA / "sextractor_auto.cat").read_bytes())
    error = error_for(packed[: len(packed) // 2])
    assert error.code == "unreadable_catalogue"
    assert_mentions(error.message, "truncated", "complete file")


def test_corrupt_gzip() -> None:
    packed = bytearray(gzip.compress((DATA / "sextractor_auto.cat").read_bytes()))
    packed[20:40] = b"\xff" * 20
    error = error_for(bytes(packed))
    assert error.code == "unreadable_catalogue"
    assert_mentions(error.message, "corrupt", "compress the catalogue again")


def test_doubly_compressed_gzip() -> None:
    error = error_for(gzip.compress(gzip.compress((DATA / "sextractor_auto.cat").read_bytes())))
    assert error.code == "unreadable_catalogue"
    assert_mentions(error.message, "twice", "decompress it once")


def test_gzip_bomb_is_stopped_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_upload_limits, "MAX_DECOMPRESSED_BYTES", 1_000_000)
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    packed = bomb.compress((b" " * 60_000 + b"\n") * 800) + bomb.flush()
    assert len(packed) < 100_000
    error = error_for(packed)
    assert error.code == "catalogue_too_large"
    assert_mentions(error.message, "larger than 0 MB", "only the columns and stars needed")


def test_real_cap_is_200_mb() -> None:
    assert source_catalogue.MAX_DECOMPRESSED_BYTES == 200 * 1024 * 1024


# --- magnitude selection ---------------------------------------------------------------------------


def test_requested_magnitude_column_absent() -> None:
    error = error_for((DATA / "sextractor_auto.cat").read_bytes(), magnitude_column="MAG_PSF")
    assert error.code == "missing_columns"
    assert_mentions(error.message, "'MAG_PSF'", "Columns found: NUMBER, FLAGS", "MAG_APER[0]")


def test_requested_magnitude_without_error_column() -> None:
    error = error_for((DATA / "sextractor_auto.cat").read_bytes(), magnitude_column="FWHM_IMAGE")
    assert error.code == "missing_columns"
    assert_mentions(error.message, "No error column found for the magnitude FWHM_IMAGE", "FWHM_IMAGEERR")


@pytest.mark.parametrize(
    ("name", "kwargs", "fragments"),
    [
        ("sextractor_aper_gap.cat", {"aperture_index": 3}, ["holds 3 apertures", "0 to 2"]),
        ("ldac.fits", {"magnitude_column": "MAG_APER[7]"}, ["holds 4 apertures", "0 to 3"]),
        ("sextractor_auto.cat", {"aperture_index": 1}, ["no MAG_APER column", "MAG_AUTO"]),
        ("sextractor_auto.cat", {"magnitude_column": "MAG_AUTO[1]"}, ["single aperture"]),
        ("sextractor_auto.cat", {"aperture_index": -1}, [">= 0"]),
    ],
)
def test_invalid_aperture(name: str, kwargs: dict[str, object], fragments: list[str]) -> None:
    error = error_for((DATA / name).read_bytes(), **kwargs)
    assert error.code == "invalid_aperture_index"
    assert_mentions(error.message, *fragments)


def test_vector_magnitude_with_scalar_error() -> None:
    text = (
        "#   1 MAG_APER\n#   3 MAGERR_APER\n#   4 ALPHA_J2000\n#   5 DELTA_J2000\n"
        + "-9 -9.1 0.01 150.1 2.2\n" * 6
    )
    error = error_for(text.encode())
    assert error.code == "missing_columns"
    assert_mentions(error.message, "2 apertures", "MAGERR_APER for every aperture")


# --- nothing but InputError escapes ----------------------------------------------------------------


def test_unexpected_failures_become_unreadable_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(text: str, *, max_rows: int) -> None:
        raise IndexError("reader bug")

    monkeypatch.setattr(source_catalogue, "read_sextractor_ascii", explode)
    error = error_for((DATA / "sextractor_auto.cat").read_bytes(), filename="x.cat")
    assert error.code == "unreadable_catalogue"
    assert_mentions(error.message, "'x.cat' could not be read", "Accepted formats")
    assert isinstance(error.__cause__, IndexError)


def test_every_code_used_is_documented() -> None:
    documented = source_catalogue.__doc__ or ""
    for _, code, _ in CORPUS:
        assert f"``{code}``" in documented
    for code in ("catalogue_too_large", "invalid_aperture_index", "too_many_rows", "corrupt_fits"):
        assert f"``{code}``" in documented


def test_empty_fits_table() -> None:
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name=n, format="D", array=np.zeros(0))
            for n in ("ALPHA_J2000", "DELTA_J2000", "MAG_AUTO", "MAGERR_AUTO")
        ]
    )
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
    error = error_for(buffer.getvalue())
    assert error.code == "too_few_stars"
    assert_mentions(error.message, "Only 0 usable stars found in 0 rows", "at least 5")
