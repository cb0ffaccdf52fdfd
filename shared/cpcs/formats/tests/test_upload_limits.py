"""The catalogue limits act while the upload streams in: small bombs are refused fast and cheaply."""

from __future__ import annotations

import gzip
import io
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from cpcs.errors import InputError
from cpcs.formats import _upload_limits
from cpcs.formats.source_catalogue import read_source_catalogue

DATA = Path(__file__).parent / "data"
HEADER = b"#   1 ALPHA_J2000\n#   2 DELTA_J2000\n#   3 MAG_AUTO\n#   4 MAGERR_AUTO\n"
ROW = b"150.100000 2.200000 15.1234 0.0123\n"


def gzip_of_repeats(head: bytes, unit: bytes, count: int) -> bytes:
    """A gzip file of ``head`` and ``count`` copies of ``unit``, built without holding them all."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(head)]
    block = unit * 100_000
    for _ in range(count // 100_000):
        parts.append(packer.compress(block))
    parts.append(packer.compress(unit * (count % 100_000)))
    parts.append(packer.flush())
    return b"".join(parts)


def refuse(data: bytes | Path, **kwargs: object) -> tuple[InputError, float, int]:
    """The error, the seconds it took and (in a second, traced run) the peak bytes allocated."""
    started = time.perf_counter()
    with pytest.raises(InputError) as info:
        read_source_catalogue(data, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    try:
        with pytest.raises(InputError):
            read_source_catalogue(data, **kwargs)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, elapsed, peak


def test_five_million_identical_rows_are_refused_fast_and_small() -> None:
    bomb = gzip_of_repeats(HEADER, ROW, 5_000_000)
    assert len(bomb) < 1_000_000  # about 340 kB, 175 MB inflated
    error, elapsed, peak = refuse(bomb)
    assert error.code == "too_many_rows"
    assert "at most 200000 data rows" in error.message
    assert elapsed < 2.0
    assert peak < 60 * 2**20  # reading stops after ~8 MB of text


def test_a_fits_table_announcing_millions_of_rows_is_refused_before_its_data() -> None:
    columns = [
        fits.Column(name=name, format="D", array=np.full(10, value))
        for name, value in (
            ("ALPHA_J2000", 150.1),
            ("DELTA_J2000", 2.2),
            ("MAG_AUTO", 15.0),
            ("MAGERR_AUTO", 0.01),
        )
    ]
    table = fits.BinTableHDU.from_columns(columns)
    table.header["NAXIS2"] = 5_000_000  # the header promises what the zeros below deliver
    buffer = io.BytesIO()
    fits.PrimaryHDU().writeto(buffer)
    head = buffer.getvalue() + table.header.tostring().encode()
    bomb = gzip_of_repeats(head, b"\0" * 32, 5_000_000)
    error, elapsed, peak = refuse(bomb)
    assert error.code == "too_many_rows"
    assert "5000000 rows" in error.message
    assert elapsed < 1.0
    assert peak < 20 * 2**20


def test_a_long_line_is_refused_when_it_passes_the_limit() -> None:
    bomb = gzip_of_repeats(HEADER, b"1 ", 50_000_000)  # one 100 MB line
    error, elapsed, peak = refuse(bomb)
    assert error.code == "line_too_long"
    assert "Line 5" in error.message
    assert elapsed < 1.0
    assert peak < 20 * 2**20


def test_too_many_values_in_wide_rows() -> None:
    wide = b" ".join([b"150.1", b"2.2", b"15.0", b"0.01"] + [b"1"] * 96) + b"\n"  # 100 values a row
    error, _, peak = refuse(HEADER + wide * 60_000)
    assert error.code == "catalogue_too_large"
    assert f"more than {_upload_limits.MAX_VALUES} values" in error.message
    assert peak < 80 * 2**20


def test_comment_lines_count_as_lines() -> None:
    error, _, _ = refuse(gzip.compress(HEADER + ROW * 10 + b"# nothing\n" * 300_000))
    assert error.code == "too_many_rows"


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_lines_cut_across_chunks_read_as_whole(monkeypatch: pytest.MonkeyPatch, newline: bytes) -> None:
    text = (DATA / "sextractor_auto.cat").read_bytes().replace(b"\n", newline)
    expected = read_source_catalogue(gzip.compress(text))
    monkeypatch.setattr(_upload_limits, "CHUNK_BYTES", 7)
    monkeypatch.setattr(_upload_limits, "MAX_LINE_BYTES", 200)
    for data in (text, gzip.compress(text), gzip.compress(text[:500]) + gzip.compress(text[500:])):
        got = read_source_catalogue(data)
        assert np.array_equal(got.mag, expected.mag)
        assert got.n_rows == expected.n_rows


def test_a_fits_catalogue_read_in_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (DATA / "ldac.fits").read_bytes()
    expected = read_source_catalogue(data)
    monkeypatch.setattr(_upload_limits, "CHUNK_BYTES", 1000)
    got = read_source_catalogue(gzip.compress(data))
    assert np.array_equal(got.mag, expected.mag)
    assert got.header == expected.header
    with pytest.raises(InputError, match="a FITS table of 8 rows"):
        read_source_catalogue(gzip.compress(data), max_rows=7)


def test_a_large_good_catalogue_is_parsed_in_memory_close_to_its_size() -> None:
    names = ["ALPHA_J2000", "DELTA_J2000", "MAG_AUTO", "MAGERR_AUTO", *(f"X{i}" for i in range(16))]
    header = "".join(f"#{i + 1:4d} {name}\n" for i, name in enumerate(names)).encode()
    row = b"150.100000 2.200000 15.1234 0.0123" + b" 1.2345" * 16 + b"\n"
    data = header + row * 50_000  # 1 million values, 7.5 MB
    tracemalloc.start()
    try:
        catalogue = read_source_catalogue(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(catalogue) == 50_000
    assert peak < 8 * len(data)  # one string object per value would be about 12 times


def test_too_many_columns() -> None:
    row = b" ".join([b"150.1", b"2.2", b"15.0", b"0.01"] + [b"1"] * 2_100) + b"\n"
    error, _, _ = refuse(HEADER + row * 10)
    assert error.code == "too_many_columns"
    assert "2104 values" in error.message and "at most 2000" in error.message


@pytest.mark.parametrize("compress", [False, True])
def test_a_file_reads_as_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: bool) -> None:
    text = (DATA / "sextractor_auto.cat").read_bytes()
    data = gzip.compress(text[:300]) + gzip.compress(text[300:]) + b"\0" * 10 if compress else text
    path = tmp_path / "frame.cat"
    path.write_bytes(data)
    monkeypatch.setattr(_upload_limits, "CHUNK_BYTES", 5)
    from_file, from_bytes = read_source_catalogue(path), read_source_catalogue(data)
    assert np.array_equal(from_file.mag, from_bytes.mag) and from_file.n_rows == from_bytes.n_rows


def test_a_file_beyond_the_cap_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.cat"
    with path.open("wb") as handle:
        handle.truncate(_upload_limits.MAX_DECOMPRESSED_BYTES + 1)  # sparse: nothing to read
    monkeypatch.setattr(_upload_limits, "_raw_chunks", lambda source: pytest.fail("the file was read"))
    error, _, _ = refuse(path)
    assert error.code == "catalogue_too_large"


def test_a_truncated_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "frame.cat.gz"
    path.write_bytes(gzip.compress((DATA / "sextractor_auto.cat").read_bytes())[:-20])
    error, _, _ = refuse(path)
    assert error.code == "unreadable_catalogue" and "truncated" in error.message
