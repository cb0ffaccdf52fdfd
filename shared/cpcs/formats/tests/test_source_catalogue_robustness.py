"""Damaged uploads never raise anything but InputError, and large catalogues parse quickly."""

from __future__ import annotations

import gzip
import logging
import random
import time
from pathlib import Path

import numpy as np
import pytest

from cpcs.errors import InputError
from cpcs.formats.source_catalogue import read_source_catalogue

DATA = Path(__file__).parent / "data"
GOOD = [
    "sextractor_auto.cat",
    "sextractor_tabs.cat",
    "sextractor_aper_gap.cat",
    "aper_numbered_elements.cat",
    "sexagesimal.cat",
    "names_line.txt",
    "table.fits",
    "ascii_table.fits",
    "ldac.fits",
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random damage: truncation, flipped or inserted bytes, deleted or duplicated spans."""
    buffer = bytearray(data)
    kind = rng.randrange(6)
    position = rng.randrange(len(buffer))
    if kind == 0:
        return bytes(buffer[:position])
    if kind == 1:
        for _ in range(rng.randint(1, 8)):
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
    elif kind == 2:
        buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    elif kind == 3:
        del buffer[position : position + rng.randint(1, 400)]
    elif kind == 4:
        end = min(len(buffer), position + rng.randint(1, 400))
        buffer[end:end] = buffer[position:end]
    else:
        printable = b"0123456789 .-+:#\t\nabcXYZ_"
        for _ in range(rng.randint(1, 8)):
            buffer[rng.randrange(len(buffer))] = printable[rng.randrange(len(printable))]
    return bytes(buffer)


@pytest.mark.parametrize("name", GOOD)
def test_random_damage_gives_a_catalogue_or_an_input_error(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = (DATA / name).read_bytes()
    rng = random.Random(name)
    codes: set[str] = set()
    caplog.set_level(logging.WARNING, logger="cpcs.formats.source_catalogue")
    for _ in range(150):
        damaged = mutate(data, rng)
        if rng.random() < 0.2:
            damaged = gzip.compress(damaged)
        try:
            cat = read_source_catalogue(damaged, filename=name)
        except InputError as error:
            assert error.message
            codes.add(error.code)
            continue
        assert len(cat) >= 5
        assert np.all((cat.ra_deg >= 0) & (cat.ra_deg < 360))
        assert np.all(np.abs(cat.dec_deg) <= 90)
        assert np.all((cat.magerr > 0) & (cat.magerr < 9))
        assert np.all(np.abs(cat.mag) < 90)
    # The safety net (which logs) must not be what caught the damage: each case has a specific check.
    unexpected = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert not unexpected, unexpected[0].exc_text
    assert codes  # damage was actually detected at least once


def synthetic_catalogue(n: int, seed: int = 1) -> bytes:
    """An ASCII_HEAD catalogue of ``n`` stars with 18 values per row, like a typical SExtractor run."""
    rng = np.random.default_rng(seed)
    header = (
        "#   1 NUMBER\n#   2 FLUX_AUTO\n#   3 MAG_AUTO\n#   4 MAGERR_AUTO\n"
        "#   5 MAG_APER\n#   8 MAGERR_APER\n#  11 X_IMAGE\n#  12 Y_IMAGE\n"
        "#  13 ALPHA_J2000\n#  14 DELTA_J2000\n#  15 FWHM_IMAGE\n#  16 FLAGS\n"
    )
    mag = rng.uniform(-14, -6, n)
    columns = [
        np.arange(1, n + 1).astype(str),
        np.char.mod("%12.5e", 10 ** (-0.4 * mag)),
        np.char.mod("%8.4f", mag),
        np.char.mod("%8.4f", rng.uniform(0.001, 0.2, n)),
        *(np.char.mod("%8.4f", mag + 0.05 * k) for k in range(3)),
        *(np.char.mod("%8.4f", rng.uniform(0.001, 0.2, n)) for _ in range(3)),
        np.char.mod("%10.3f", rng.uniform(0, 2048, n)),
        np.char.mod("%10.3f", rng.uniform(0, 2048, n)),
        np.char.mod("%11.7f", rng.uniform(150.0, 150.3, n)),
        np.char.mod("%+11.7f", rng.uniform(2.0, 2.3, n)),
        np.char.mod("%8.2f", rng.uniform(2, 5, n)),
        rng.integers(0, 4, n).astype(str),
    ]
    rows = [" ".join(values) for values in zip(*(c.tolist() for c in columns), strict=True)]
    return (header + "\n".join(rows) + "\n").encode()


def test_2000_row_ascii_catalogue_parses_in_a_few_milliseconds() -> None:
    data = synthetic_catalogue(2000)
    cat = read_source_catalogue(data)
    assert len(cat) == 2000
    timings = []
    for _ in range(15):
        start = time.perf_counter()
        read_source_catalogue(data)
        timings.append(time.perf_counter() - start)
    best_ms = min(timings) * 1e3
    # Target is < 5 ms on a developer machine (measured ~2 ms); the bound leaves room for slow CI.
    assert best_ms < 25, f"2,000-row catalogue took {best_ms:.1f} ms"


def test_many_rows_up_to_the_limit() -> None:
    data = synthetic_catalogue(20_000, seed=2)
    assert len(read_source_catalogue(data, max_rows=20_000)) == 20_000
    with pytest.raises(InputError) as info:
        read_source_catalogue(data, max_rows=19_999)
    assert info.value.code == "too_many_rows"
