"""The rules of templates that need no server: filter bands and the ranking of archive frames."""

from __future__ import annotations

import pytest

from cpcs.db.models import ImageReduction
from cpcs.domain.templates import _archive_rank, template_band
from cpcs.errors import InputError
from cpcs.science.imaging.header import InstrumentDefaults


def test_bands_of_template_filters() -> None:
    assert template_band("r'", None) == "r"
    assert template_band("Clear", None) == "Clear"
    andor = InstrumentDefaults(filters={"2": "V", "3": "R"})
    assert template_band("3", andor) == "R"  # the instrument's filter-wheel name
    assert template_band("v", andor) == "V"  # or the band it stands for
    with pytest.raises(InputError) as refused:
        template_band("B", andor)
    assert refused.value.code == "filter_not_on_instrument"
    with pytest.raises(InputError) as unknown:
        template_band("Halpha-wide", None)
    assert unknown.value.code == "unknown_filter"


def test_archive_frames_rank_by_depth_then_seeing() -> None:
    def frame(depth: float | None, fwhm: float) -> ImageReduction:
        return ImageReduction(quality={"limit_mag_inst_5sigma": depth, "fwhm_arcsec": fwhm})

    deep_soft, deep_sharp, shallow_sharp, unknown = (
        frame(-5.98, 2.5),
        frame(-6.02, 1.5),
        frame(-7.0, 1.0),
        frame(None, 1.0),
    )
    ranked = sorted([shallow_sharp, unknown, deep_soft, deep_sharp], key=_archive_rank)
    # Deeper is a fainter limit; in the same 0.1 mag step the sharper wins, a magnitude deeper beats seeing.
    assert ranked == [deep_sharp, deep_soft, shallow_sharp, unknown]
