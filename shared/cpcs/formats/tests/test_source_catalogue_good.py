"""Well-formed uploads of every accepted format are read correctly."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from cpcs.formats.source_catalogue import SourceCatalogue, read_source_catalogue

DATA = Path(__file__).parent / "data"

# The seven usable stars shared by the corpus (the eighth row of each file is a failed 99 measurement).
RA = np.array([150.10012, 150.11234, 150.09541, 150.12117, 150.08888, 150.10555, 150.13001])
DEC = np.array([2.20015, 2.21043, 2.19233, 2.18777, 2.22222, 2.21555, 2.20500])
MAG = np.array([-9.488, -10.221, -8.7733, -11.0042, -7.9987, -9.9001, -12.1003])
MAGERR = np.array([0.012, 0.0081, 0.0215, 0.0052, 0.0412, 0.0101, 0.0031])
FLAGS = np.array([0, 0, 2, 0, 0, 16, 4])


def read(name: str, **kwargs: object) -> SourceCatalogue:
    return read_source_catalogue((DATA / name).read_bytes(), filename=name, **kwargs)  # type: ignore[arg-type]


def assert_stars(cat: SourceCatalogue, *, mag_offset: float = 0.0, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(cat.ra_deg, RA, atol=atol)
    np.testing.assert_allclose(cat.dec_deg, DEC, atol=atol)
    np.testing.assert_allclose(cat.mag, MAG + mag_offset, atol=1e-4)
    np.testing.assert_allclose(cat.magerr, MAGERR, atol=1e-4)
    for array in (cat.ra_deg, cat.dec_deg, cat.mag, cat.magerr):
        assert array.dtype == np.float64
        assert not array.flags.writeable
    assert len(cat) == cat.n_rows - cat.n_rejected


def legacy_text(
    rows: list[str], names: tuple[str, ...] = ("MAG_AUTO", "MAGERR_AUTO", "ALPHA_J2000", "DELTA_J2000")
) -> bytes:
    header = "".join(f"#{i:4d} {name}\n" for i, name in enumerate(names, start=1))
    return (header + "\n".join(rows) + "\n").encode()


GOOD_ROWS = [f"{m:.4f} {e:.4f} {r:.7f} {d:+.7f}" for m, e, r, d in zip(MAG, MAGERR, RA, DEC, strict=True)]


# --- SExtractor ASCII_HEAD -------------------------------------------------------------------------


def test_sextractor_ascii_head_with_columns_in_odd_order_and_extras() -> None:
    cat = read("sextractor_auto.cat")
    assert cat.format == "sextractor_ascii"
    assert cat.magnitude_column == "MAG_AUTO"
    assert (cat.n_rows, cat.n_rejected) == (8, 1)  # the 99 row
    assert_stars(cat)
    assert cat.flags is not None
    np.testing.assert_array_equal(cat.flags, FLAGS)
    assert cat.header == {}


def test_tab_separated_file_reads_like_the_space_separated_one() -> None:
    spaces, tabs = read("sextractor_auto.cat"), read("sextractor_tabs.cat")
    assert_stars(tabs)
    np.testing.assert_array_equal(tabs.mag, spaces.mag)
    assert tabs.flags is not None
    np.testing.assert_array_equal(tabs.flags, FLAGS)


def test_windows_and_old_mac_line_endings() -> None:
    text = (DATA / "sextractor_auto.cat").read_bytes()
    for newline in (b"\r\n", b"\r"):
        assert_stars(read_source_catalogue(text.replace(b"\n", newline)))


def test_utf8_byte_order_mark_is_ignored() -> None:
    assert_stars(read_source_catalogue(b"\xef\xbb\xbf" + (DATA / "sextractor_auto.cat").read_bytes()))


def test_legacy_manual_example_four_columns() -> None:
    cat = read_source_catalogue(legacy_text(GOOD_ROWS))
    assert_stars(cat)
    assert cat.flags is None
    assert (cat.n_rows, cat.n_rejected) == (7, 0)


def test_mag_aper_vector_with_numbering_gap() -> None:
    cat = read("sextractor_aper_gap.cat")
    assert cat.magnitude_column == "MAG_APER[0]"
    assert_stars(cat)
    assert cat.flags is not None
    np.testing.assert_array_equal(cat.flags, FLAGS)


@pytest.mark.parametrize("name", ["sextractor_aper_gap.cat", "aper_numbered_elements.cat"])
@pytest.mark.parametrize(
    ("kwargs", "label", "offset"),
    [
        ({}, "MAG_APER[0]", 0.0),
        ({"aperture_index": 2}, "MAG_APER[2]", 0.10),
        ({"magnitude_column": "MAG_APER[1]"}, "MAG_APER[1]", 0.05),
        ({"magnitude_column": "mag_aper", "aperture_index": 1}, "MAG_APER[1]", 0.05),
    ],
)
def test_aperture_selection_in_both_vector_conventions(
    name: str, kwargs: dict[str, object], label: str, offset: float
) -> None:
    cat = read(name, **kwargs)
    assert cat.magnitude_column == label
    assert_stars(cat, mag_offset=offset)


def test_explicit_vector_element_named_as_in_the_header() -> None:
    cat = read("aper_numbered_elements.cat", magnitude_column="MAG_APER_3")
    assert cat.magnitude_column == "MAG_APER[2]"
    assert_stars(cat, mag_offset=0.10)


def test_vector_elements_numbered_from_one() -> None:
    names = ("MAG_APER_1", "MAG_APER_2", "MAGERR_APER_1", "MAGERR_APER_2", "ALPHA_J2000", "DELTA_J2000")
    rows = [
        f"{m:.4f} {m + 0.05:.4f} {e} {e} {r} {d}" for m, e, r, d in zip(MAG, MAGERR, RA, DEC, strict=True)
    ]
    cat = read_source_catalogue(legacy_text(rows, names), aperture_index=1)
    assert cat.magnitude_column == "MAG_APER[1]"
    assert_stars(cat, mag_offset=0.05)


def test_vector_as_last_column_takes_the_remaining_values() -> None:
    names = ("ALPHA_J2000", "DELTA_J2000", "MAGERR_APER", "MAG_APER")
    header = "#   1 ALPHA_J2000\n#   2 DELTA_J2000\n#   3 MAGERR_APER\n#   5 MAG_APER\n"
    rows = [
        f"{r} {d} {e} {e} {m:.4f} {m + 0.05:.4f}" for m, e, r, d in zip(MAG, MAGERR, RA, DEC, strict=True)
    ]
    assert names  # documents the layout
    cat = read_source_catalogue((header + "\n".join(rows)).encode(), aperture_index=1)
    assert cat.magnitude_column == "MAG_APER[1]"
    assert_stars(cat, mag_offset=0.05)


def test_sexagesimal_coordinates() -> None:
    cat = read("sexagesimal.cat")
    assert_stars(cat, atol=2e-6)  # the file rounds RA to 1 ms of time, Dec to 0.01 arcsec


def test_sexagesimal_negative_declination_below_one_degree() -> None:
    rows = [
        f"{m:.4f} {e:.4f} 10:00:{24 + i}.0 -00:{30 + i}:00.0"
        for i, (m, e) in enumerate(zip(MAG, MAGERR, strict=True))
    ]
    cat = read_source_catalogue(legacy_text(rows))
    assert cat.dec_deg[0] == pytest.approx(-0.5)
    assert cat.ra_deg[0] == pytest.approx(150.1)
    assert np.all(cat.dec_deg < 0)


def test_truncated_sextractor_names() -> None:
    assert_stars(read("truncated_names.cat"))


def test_single_line_of_names_and_world_coordinate_aliases() -> None:
    cat = read("names_line.txt")
    assert cat.magnitude_column == "MAG_AUTO"
    assert_stars(cat)


@pytest.mark.parametrize(
    ("ra_name", "dec_name"), [("RA", "DEC"), ("ra", "dec"), ("ALPHAWIN_J2000", "DELTAWIN_J2000")]
)
def test_uncommented_names_line_and_coordinate_aliases(ra_name: str, dec_name: str) -> None:
    text = f"MAG_AUTO MAGERR_AUTO {ra_name} {dec_name}\n" + "\n".join(GOOD_ROWS)
    assert_stars(read_source_catalogue(text.encode()))


def test_exact_name_preferred_over_truncated_alias() -> None:
    names = ("MAG_AUTO", "MAGERR_AUTO", "ALPHA_J2000", "DELTA_J2000", "ALPHA_J200")
    rows = [f"{row} 0.0" for row in GOOD_ROWS]
    assert_stars(read_source_catalogue(legacy_text(rows, names)))


def test_duplicate_unused_columns_are_tolerated() -> None:
    names = ("MAG_AUTO", "MAGERR_AUTO", "ALPHA_J2000", "DELTA_J2000", "FWHM_IMAGE", "FWHM_IMAGE")
    rows = [f"{row} 3.1 3.2" for row in GOOD_ROWS]
    assert_stars(read_source_catalogue(legacy_text(rows, names)))


def test_mag_auto_without_error_falls_back_to_mag_aper() -> None:
    names = ("MAG_AUTO", "MAG_APER", "MAGERR_APER", "ALPHA_J2000", "DELTA_J2000")
    rows = [f"{m - 1:.4f} {m:.4f} {e} {r} {d}" for m, e, r, d in zip(MAG, MAGERR, RA, DEC, strict=True)]
    cat = read_source_catalogue(legacy_text(rows, names))
    assert cat.magnitude_column == "MAG_APER[0]"
    assert_stars(cat)


def test_a_few_junk_lines_are_skipped_and_counted() -> None:
    rows = [*GOOD_ROWS[:3], "this line was typed by hand", *GOOD_ROWS[3:], "-9.1 0.01 abc 2.2", "1 2 3"]
    cat = read_source_catalogue(legacy_text(rows))
    assert_stars(cat)
    assert (cat.n_rows, cat.n_rejected) == (10, 3)


def test_comments_blank_lines_and_trailing_comments_in_the_body() -> None:
    rows = [GOOD_ROWS[0] + "   # the target", "", "# a comment between rows", *GOOD_ROWS[1:], "  "]
    cat = read_source_catalogue(legacy_text(rows))
    assert_stars(cat)
    assert cat.n_rejected == 0


def test_every_row_with_a_trailing_comment() -> None:
    rows = [f"{row} # star {i}" for i, row in enumerate(GOOD_ROWS)]
    rows[2] = rows[2].replace(" # ", "#")  # glued to the last value
    cat = read_source_catalogue(legacy_text(rows))
    assert_stars(cat)
    assert cat.n_rejected == 0


def test_unusable_values_are_dropped_not_fatal() -> None:
    rows = [
        *GOOD_ROWS,
        "nan 0.01 150.1 2.2",  # NaN magnitude
        "-9.0 inf 150.1 2.2",  # infinite error
        "-9.0 0.0 150.1 2.2",  # zero error
        "-9.0 -0.1 150.1 2.2",  # negative error
        "-9.0 9.5 150.1 2.2",  # error >= 9
        "-99.0 0.1 150.1 2.2",  # -99 sentinel
        "-9.0 0.1 360.0 2.2",  # RA out of range
        "-9.0 0.1 150.1 -90.5",  # Dec out of range
    ]
    cat = read_source_catalogue(legacy_text(rows))
    assert_stars(cat)
    assert (cat.n_rows, cat.n_rejected) == (15, 8)


def test_ra_values_below_24_are_taken_as_degrees_not_hours() -> None:
    rows = [
        f"{m:.4f} {e:.4f} {10.0 + 0.01 * i:.5f} {d:+.5f}"
        for i, (m, e, d) in enumerate(zip(MAG, MAGERR, DEC, strict=True))
    ]
    cat = read_source_catalogue(legacy_text(rows))
    assert cat.ra_deg[0] == pytest.approx(10.0)


def test_flags_are_kept_not_used_to_reject_rows() -> None:
    names = ("MAG_AUTO", "MAGERR_AUTO", "ALPHA_J2000", "DELTA_J2000", "FLAGS")
    rows = [f"{row} {flag}" for row, flag in zip(GOOD_ROWS, [0, 255, 4, 0, 1, 2, 8], strict=True)]
    cat = read_source_catalogue(legacy_text(rows, names))
    assert len(cat) == 7
    assert cat.flags is not None
    assert cat.flags.dtype == np.int64
    np.testing.assert_array_equal(cat.flags, [0, 255, 4, 0, 1, 2, 8])


def test_min_stars_can_be_lowered() -> None:
    cat = read_source_catalogue(legacy_text(GOOD_ROWS[:2]), min_stars=2)
    assert len(cat) == 2


# --- FITS ------------------------------------------------------------------------------------------


def test_fits_binary_table_prefers_mag_auto() -> None:
    cat = read("table.fits")
    assert (cat.format, cat.magnitude_column) == ("fits_table", "MAG_AUTO")
    assert (cat.n_rows, cat.n_rejected) == (8, 1)
    assert_stars(cat)
    assert cat.flags is not None
    np.testing.assert_array_equal(cat.flags, FLAGS)
    assert cat.header == {}


@pytest.mark.parametrize(
    ("kwargs", "label", "offset"),
    [
        ({"aperture_index": 1}, "MAG_APER[1]", 0.05),
        ({"magnitude_column": "MAG_APER"}, "MAG_APER[0]", 0.0),
        ({"magnitude_column": "MAG_APER[2]"}, "MAG_APER[2]", 0.10),
    ],
)
def test_fits_vector_column_apertures(kwargs: dict[str, object], label: str, offset: float) -> None:
    cat = read("table.fits", **kwargs)
    assert cat.magnitude_column == label
    assert_stars(cat, mag_offset=offset)


def test_fits_ascii_table_extension_with_named_magnitude() -> None:
    cat = read("ascii_table.fits", magnitude_column="MAG_PSF")
    assert (cat.format, cat.magnitude_column) == ("fits_table", "MAG_PSF")
    assert_stars(cat)


def test_fits_ldac_with_vector_mag_aper_and_image_header() -> None:
    cat = read("ldac.fits")
    assert (cat.format, cat.magnitude_column) == ("fits_ldac", "MAG_APER[0]")
    assert_stars(cat)
    assert cat.flags is not None
    np.testing.assert_array_equal(cat.flags, FLAGS)
    assert cat.header["DATE-OBS"] == "2024-03-05T21:14:07.5"
    assert cat.header["EXPTIME"] == "120.0"
    assert cat.header["FILTER"] == "R"
    assert cat.header["SATURATE"] == "T"
    assert "COMMENT" not in cat.header

    last = read("ldac.fits", aperture_index=3)
    assert last.magnitude_column == "MAG_APER[3]"
    assert_stars(last, mag_offset=0.15)


def test_fits_ldac_with_header_as_one_long_string_and_two_chips() -> None:
    image_header = fits.Header([("DATE-OBS", "2024-01-01T00:00:00"), ("EXPTIME", 30.0)])
    text = image_header.tostring()
    imhead = fits.BinTableHDU.from_columns(
        [fits.Column(name="Field Header Card", format=f"{len(text)}A", array=np.array([text]))],
        name="LDAC_IMHEAD",
    )

    def objects(sl: slice) -> fits.BinTableHDU:
        return fits.BinTableHDU.from_columns(
            [
                fits.Column(name="ALPHA_J2000", format="D", array=RA[sl]),
                fits.Column(name="DELTA_J2000", format="D", array=DEC[sl]),
                fits.Column(name="MAG_AUTO", format="E", array=MAG[sl]),
                fits.Column(name="MAGERR_AUTO", format="E", array=MAGERR[sl]),
            ],
            name="LDAC_OBJECTS",
        )

    buffer = io.BytesIO()
    fits.HDUList(
        [fits.PrimaryHDU(), imhead, objects(slice(0, 4)), imhead.copy(), objects(slice(4, None))]
    ).writeto(buffer)
    cat = read_source_catalogue(buffer.getvalue())
    assert cat.format == "fits_ldac"
    assert_stars(cat)
    assert cat.header == {"DATE-OBS": "2024-01-01T00:00:00", "EXPTIME": "30.0"}


def test_fits_table_with_sexagesimal_string_columns_and_lowercase_names() -> None:
    ra = [f"10:00:{24.0 + i:06.3f}" for i in range(7)]
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ra", format="12A", array=np.array(ra)),
            fits.Column(name="dec", format="12A", array=np.array(["+02:12:00.0"] * 7)),
            fits.Column(name="mag_auto", format="D", array=MAG),
            fits.Column(name="magerr_auto", format="D", array=MAGERR),
        ]
    )
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
    cat = read_source_catalogue(buffer.getvalue())
    assert cat.ra_deg[0] == pytest.approx(150.1)
    assert cat.dec_deg[0] == pytest.approx(2.2)


def test_fits_with_trailing_padding_is_accepted() -> None:
    data = (DATA / "table.fits").read_bytes()
    assert_stars(read_source_catalogue(data + b"\0" * 2880))


# --- gzip ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sextractor_auto.cat", "table.fits", "ldac.fits"])
def test_gzip_compressed_upload(name: str) -> None:
    plain = read(name)
    packed = read_source_catalogue(gzip.compress((DATA / name).read_bytes()), filename=name + ".gz")
    assert packed.format == plain.format
    assert_stars(packed)


def test_multi_member_gzip() -> None:
    text = (DATA / "sextractor_auto.cat").read_bytes()
    half = text.index(b"\n", len(text) // 2) + 1
    assert_stars(read_source_catalogue(gzip.compress(text[:half]) + gzip.compress(text[half:])))


def test_bytearray_and_memoryview_are_accepted() -> None:
    text = (DATA / "sextractor_auto.cat").read_bytes()
    assert_stars(read_source_catalogue(bytearray(text)))  # type: ignore[arg-type]
    assert_stars(read_source_catalogue(memoryview(text)))  # type: ignore[arg-type]
