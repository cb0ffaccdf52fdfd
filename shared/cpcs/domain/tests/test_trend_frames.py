"""Which frames an instrument's trends read, and what they take from an image's reduction."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from cpcs.db.engine import Database
from cpcs.db.models import (
    Alert,
    Base,
    Calibration,
    ImageReduction,
    Instrument,
    Observation,
    Observatory,
    Point,
    Upload,
    User,
    utcnow,
)
from cpcs.db.secret_box import SecretBox, new_key
from cpcs.domain.trends import instrument_trends
from cpcs.errors import NotFoundError
from cpcs.science.airmass import airmass_at

SITE = {"lon_deg": 21.42, "lat_deg": 52.09, "elevation_m": 138.0}
RA_DEG, DEC_DEG = 295.00474, 30.13149


def _frame(session: Any, n: int, instrument: Instrument, user: User, alert: Alert, **kw: Any) -> Observation:
    upload = Upload(sha256=f"{n:064d}", size_bytes=1, kind="image", stored_path="x")
    session.add(upload)
    session.flush()
    observation = Observation(
        alert_id=alert.id, user_id=user.id, upload_id=upload.id, instrument_id=instrument.id,
        mjd=kw["mjd"], exptime_s=kw.get("exptime_s", 60.0), filter_declared="r",
        dry_run=kw.get("dry_run", False), status="calibrated",
    )  # fmt: skip
    session.add(observation)
    session.flush()
    calibration = Calibration(
        observation_id=observation.id, version=1, pipeline_version="t", mode="AUTO", survey="PS1", band="r",
        zp=kw.get("zp", 25.0), zp_err=0.01, colour_term=kw.get("colour_term", 0.02), colour_term_err=0.01,
        scatter=0.02, intrinsic_scatter=0.0, n_stars=50, n_matched=60, outlier_fraction=0.0,
    )  # fmt: skip
    session.add(calibration)
    session.flush()
    session.add(
        Point(
            observation_id=observation.id, alert_id=alert.id, user_id=user.id, calibration_id=calibration.id,
            mjd=kw["mjd"], survey="PS1", band="r", mag=15.0, magerr=0.01, caliberr=0.02, mag_err_total=0.022,
            limit_mag=19.5, deleted_at=utcnow() if kw.get("deleted") else None,
        )
    )  # fmt: skip
    if "quality" in kw:
        session.add(
            ImageReduction(
                observation_id=observation.id, status="reduced", quality=kw["quality"],
                header={"pixel_scale_arcsec": 0.5}, pipeline_version="t",
            )
        )  # fmt: skip
    return observation


def test_frames_are_the_instruments_real_points_with_the_image_facts(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 't.sqlite3'}", secret_box=SecretBox([new_key()]))
    try:
        Base.metadata.create_all(database.engine)
        with database.transaction() as session:
            site = Observatory(name="Ostrowik 0.6m", **SITE)
            session.add(site)
            session.flush()
            camera, other_camera = (
                Instrument(observatory_id=site.id, name=n, filters={}) for n in ("a", "b")
            )
            user = User(name="K. Rybicki", observatory_id=site.id)
            alert = Alert(name="ivo://Gaia16aye", ra_deg=RA_DEG, dec_deg=DEC_DEG)
            session.add_all([camera, other_camera, user, alert])
            session.flush()
            quality = {"airmass": 1.37, "fwhm_arcsec": 2.1, "background_level_adu": 400.0,
                       "noise_model": {"gain_e_per_adu": 1.5}}  # fmt: skip
            image = _frame(session, 1, camera, user, alert, mjd=60150.9, quality=quality)
            catalogue = _frame(session, 2, camera, user, alert, mjd=60150.95, colour_term=0.03)
            _frame(session, 3, camera, user, alert, mjd=60150.97, dry_run=True)
            _frame(session, 4, camera, user, alert, mjd=60150.98, deleted=True)
            _frame(session, 5, other_camera, user, alert, mjd=60150.99)
            ids = (camera.id, image.id, catalogue.id)
        with database.transaction() as session:
            trends = instrument_trends(session, ids[0], exptimes_s=[60.0, 240.0], airmass=1.0)
            with pytest.raises(NotFoundError):
                instrument_trends(session, 999)
        assert [f.observation_id for f in trends.frames] == [
            ids[1],
            ids[2],
        ]  # no dry run, deleted, other camera
        measured, computed = trends.frames
        assert measured.airmass == 1.37 and measured.airmass_source == "image" and measured.fwhm_arcsec == 2.1
        # the sky per square arcsec on the frame's scale (electrons per second) plus its zero point
        assert measured.sky_mag_arcsec2 == pytest.approx(25.0 - 2.5 * math.log10(400.0 * 1.5 / 60.0 / 0.25))
        expected = airmass_at(RA_DEG, DEC_DEG, 60150.95, **SITE).value
        assert computed.airmass_source == "computed" and computed.airmass == pytest.approx(expected)
        assert computed.fwhm_arcsec is None and computed.sky_mag_arcsec2 is None
        assert computed.colour_term == 0.03 and measured.colour_term == 0.02
        [series] = trends.series
        assert (series.filter, series.survey, series.band, series.n_frames) == ("r", "PS1", "r", 2)
        assert [n.why_not is not None for n in series.nights] == [True]  # 2 frames: no fit, said why
        assert [e.exptime_s for e in series.expected_limits] == [60.0, 240.0]
        gain = series.expected_limits[1].limit_mag - series.expected_limits[0].limit_mag
        assert gain == pytest.approx(1.25 * math.log10(4.0), abs=1e-3)
    finally:
        database.dispose()
