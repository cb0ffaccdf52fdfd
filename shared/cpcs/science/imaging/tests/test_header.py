"""standardise_header: times, exposure, filters, gain, saturation, pointing, scale and WCS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from cpcs.science.imaging.header import (
    InstrumentDefaults,
    estimate_saturation_level,
    standardise_header,
)


def make_header(**cards: object) -> fits.Header:
    header = fits.Header()
    for key, value in cards.items():
        header[
            key.replace("_", "-")
            if key in {"DATE_OBS", "TIME_OBS", "MJD_OBS", "MJD_MID", "DATE_AVG"}
            else key
        ] = value
    return header


def mjd(iso: str) -> float:
    return float(Time(iso, format="isot", scale="utc").mjd)


def tan_cards(scale_deg: float = 0.6 / 3600, **extra: object) -> dict[str, object]:
    cards: dict[str, object] = {
        "NAXIS": 2,
        "NAXIS1": 100,
        "NAXIS2": 100,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": 150.0,
        "CRVAL2": 20.0,
        "CRPIX1": 50.5,
        "CRPIX2": 50.5,
        "CD1_1": -scale_deg,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": scale_deg,
    }
    cards.update(extra)
    return cards


class TestTime:
    def test_date_obs_with_time_plus_half_exposure(self) -> None:
        h = standardise_header(make_header(DATE_OBS="2024-03-01T22:00:00", EXPTIME=120.0))
        assert h.mjd_mid == pytest.approx(mjd("2024-03-01T22:01:00"), abs=1e-8)
        assert h.date_source == "DATE-OBS+EXPTIME/2"
        assert h.exptime_s == 120.0

    @pytest.mark.parametrize("key", ["TIME-OBS", "UT", "UTSTART"])
    def test_date_and_separate_time(self, key: str) -> None:
        header = make_header(DATE_OBS="2024-03-01", EXPOSURE=60)
        header[key] = "22:00:00.0"
        h = standardise_header(header)
        assert h.mjd_mid == pytest.approx(mjd("2024-03-01T22:00:30"), abs=1e-8)
        assert h.date_source == f"DATE-OBS+{key}+EXPTIME/2"

    def test_taihms_is_tai_and_string_numbers_count(self) -> None:
        # the SDSS frame header: EXPTIME a string card, the time of day in TAIHMS (TAI = UTC + 32 s in 2001)
        header = make_header(
            DATE_OBS="2001-09-20", EXPTIME="53.907456", TAIHMS="06:24:41.19", BUNIT="nanomaggy"
        )
        h = standardise_header(header)
        assert h.exptime_s == 53.907456
        assert h.date_source == "DATE-OBS+TAIHMS+EXPTIME/2"
        assert h.mjd_mid == pytest.approx(mjd("2001-09-20T06:24:09.19") + 53.907456 / 2 / 86400, abs=1e-8)
        assert h.pixel_unit == "nanomaggy"

    def test_utc_time_cards_win_over_taihms(self) -> None:
        header = make_header(DATE_OBS="2001-09-20", EXPTIME=0.0, TAIHMS="06:24:41.19", UT="06:24:09.19")
        assert standardise_header(header).date_source == "DATE-OBS+UT (start)"

    def test_old_fits_date_form(self) -> None:
        h = standardise_header(make_header(DATE_OBS="01/03/98", TIME_OBS="01:00:00", ITIME=0.0))
        assert h.mjd_mid == pytest.approx(mjd("1998-03-01T01:00:00"), abs=1e-8)

    def test_date_without_time_gives_none(self) -> None:
        h = standardise_header(make_header(DATE_OBS="2024-03-01", EXPTIME=10))
        assert h.mjd_mid is None
        assert h.date_source == "none"
        assert any("no time" in note for note in h.notes)

    def test_mjd_mid_wins_and_is_not_shifted(self) -> None:
        h = standardise_header(make_header(MJD_MID=60000.5, MJD_OBS=60000.4, EXPTIME=300))
        assert h.mjd_mid == 60000.5
        assert h.date_source == "MJD-MID"

    def test_mjd_obs(self) -> None:
        h = standardise_header(make_header(MJD_OBS=60000.0, EXP_TIME=86.4))
        assert h.mjd_mid == pytest.approx(60000.0005)

    def test_jd_and_hjd(self) -> None:
        h = standardise_header(make_header(JD=2460000.5, EXPTIME=0.0))
        assert h.mjd_mid == pytest.approx(60000.0)
        assert h.exptime_s is None
        h = standardise_header(make_header(HJD=2460000.5, EXPTIME=172.8))
        assert h.mjd_mid == pytest.approx(60000.001)
        assert h.date_source == "HJD+EXPTIME/2"
        assert any("HJD" in note for note in h.notes)

    def test_no_exposure_time_uses_start(self) -> None:
        h = standardise_header(make_header(MJD_OBS=60000.25))
        assert h.mjd_mid == 60000.25
        assert h.date_source == "MJD-OBS (start)"


class TestFilterGainSaturation:
    def test_filter2_clear_skipped(self) -> None:
        assert standardise_header(make_header(FILTER1="V", FILTER2="CLEAR")).filter_name == "V"
        assert standardise_header(make_header(FILTER1="OPEN", FILTER2="r'")).filter_name == "r'"

    def test_clear_alone_is_kept(self) -> None:
        assert standardise_header(make_header(FILTER="Clear")).filter_name == "Clear"

    def test_filter_translation_and_default(self) -> None:
        inst = InstrumentDefaults(filters={"sdss-r": "r"}, default_filter="V")
        assert standardise_header(make_header(FILTNAM="SDSS-R "), instrument=inst).filter_name == "r"
        assert standardise_header(make_header(OBJECT="x"), instrument=inst).filter_name == "V"

    def test_gain_saturation_keys_and_defaults(self) -> None:
        h = standardise_header(make_header(EGAIN=1.7, SATLEVEL=50000))
        assert (h.gain_e_per_adu, h.saturation_adu) == (1.7, 50000.0)
        assert standardise_header(make_header(GAIN1=2.0, MAXLIN=40000)).gain_e_per_adu == 2.0
        inst = InstrumentDefaults(gain=3.0, saturation=30000.0, pixel_scale=1.2)
        h = standardise_header(make_header(GAIN=1.1), instrument=inst)
        assert h.gain_e_per_adu == 1.1  # header wins
        assert h.saturation_adu == 30000.0
        assert h.pixel_scale_arcsec == 1.2
        assert standardise_header(make_header(GAIN="n/a")).gain_e_per_adu is None

    def test_estimate_saturation_level(self) -> None:
        data = np.random.default_rng(1).normal(100, 5, (50, 50)).astype(np.float32)
        assert estimate_saturation_level(data) is None
        data[10:12, 10:13] = 65535.0
        assert estimate_saturation_level(data) == pytest.approx(0.98 * 65535.0)


class TestPointingAndWcs:
    def test_sexagesimal_ra_in_hours(self) -> None:
        h = standardise_header(make_header(OBJCTRA="12 30 00", OBJCTDEC="-10 30 00", OBJECT=" SN 2024abc "))
        assert h.ra_deg == pytest.approx(187.5)
        assert h.dec_deg == pytest.approx(-10.5)
        assert h.object_name == "SN 2024abc"
        h = standardise_header(make_header(RA="12:30:00.0", DEC="+05:00:00"))
        assert (h.ra_deg, h.dec_deg) == (pytest.approx(187.5), pytest.approx(5.0))

    def test_decimal_degrees(self) -> None:
        h = standardise_header(make_header(RA=187.5, DEC=-10.5, PIXSCALE=0.9))
        assert (h.ra_deg, h.dec_deg, h.pixel_scale_arcsec) == (187.5, -10.5, 0.9)
        assert h.wcs is None

    def test_tan_wcs(self) -> None:
        h = standardise_header(make_header(**tan_cards()))
        assert h.wcs is not None
        assert h.pixel_scale_arcsec == pytest.approx(0.6)
        assert (h.ra_deg, h.dec_deg) == (pytest.approx(150.0), pytest.approx(20.0))

    def test_singular_and_absurd_wcs_rejected(self) -> None:
        h = standardise_header(make_header(**tan_cards(CD1_1=0.0, CD2_2=0.0)))
        assert h.wcs is None
        assert any("WCS rejected" in n for n in h.notes)
        h = standardise_header(make_header(**tan_cards(scale_deg=2.0)))
        assert h.wcs is None
        assert any("absurd" in n for n in h.notes)

    def test_tan_sip_and_tpv(self) -> None:
        sip = tan_cards(A_ORDER=2, B_ORDER=2, A_2_0=1e-6, B_0_2=1e-6)
        sip["CTYPE1"], sip["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
        h = standardise_header(make_header(**sip))
        assert h.wcs is not None and h.wcs.sip is not None
        tpv = tan_cards(PV1_0=0.0, PV1_1=1.0, PV1_7=1e-3, PV2_0=0.0, PV2_1=1.0)
        tpv["CTYPE1"], tpv["CTYPE2"] = "RA---TPV", "DEC--TPV"
        h = standardise_header(make_header(**tpv))
        assert h.wcs is not None
        ra, dec = h.wcs.all_pix2world([[10.0, 10.0]], 0)[0]
        assert math.isfinite(ra) and math.isfinite(dec)

    def test_scale_from_cdelt_without_celestial_ctype(self) -> None:
        assert standardise_header(make_header(CDELT1=-2.5e-4)).pixel_scale_arcsec == pytest.approx(0.9)
