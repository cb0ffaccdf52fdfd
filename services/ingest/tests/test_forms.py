"""The loose form fields of the legacy upload are read strictly, with messages that say what to send."""

from __future__ import annotations

import pytest

from cpcs.domain.revisions import check_mjd
from cpcs.errors import InputError
from cpcs.science.selection import parse_force_filter
from cpcs_ingest.forms import parse_flag, parse_optional_float
from cpcs_ingest.service import _safe_filename


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no", None),
        ("", None),
        ("No", None),
        (None, None),
        ("APASS/V", "APASS/V"),
        (" any / r ", "any/r"),
        ("SDSS/I", "SDSS/I"),
    ],
)
def test_force_filter(value: str | None, expected: str | None) -> None:
    assert parse_force_filter(value) == expected


@pytest.mark.parametrize("value", ["APASS", "/V", "APASS/", "a/b/c"])
def test_force_filter_rejects(value: str) -> None:
    with pytest.raises(InputError, match="SURVEY/BAND"):
        parse_force_filter(value)


def test_flags_and_numbers() -> None:
    assert parse_flag("1") and parse_flag("true") and not parse_flag("0") and not parse_flag(None)
    with pytest.raises(InputError):
        parse_flag("maybe")
    assert parse_optional_float(" 57737.5 ", "MJD") == 57737.5
    assert parse_optional_float("", "MJD") is None
    for bad in ("abc", "nan", "inf"):
        with pytest.raises(InputError, match="MJD"):
            parse_optional_float(bad, "MJD")


def test_mjd_that_is_a_julian_date_is_refused_with_the_fix() -> None:
    with pytest.raises(InputError, match=r"2400000\.5"):
        check_mjd(2457737.81)
    assert check_mjd(57737.81) == 57737.81


def test_filenames_never_carry_paths() -> None:
    assert _safe_filename("../../etc/passwd") == "passwd"
    assert _safe_filename("C:\\data\\frame.cat") == "frame.cat"
    assert _safe_filename("") is None
