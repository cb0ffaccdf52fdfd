"""The survey template (third source) through reduce's step, on the real database and file store:
fetched once from hips2fits (a recorded answer on a local socket), checked like an upload, kept
with its provenance and listed; offline it is a note."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpcs.settings import Settings
from cpcs.simulation.image_simulator import image_to_fits_bytes
from cpcs.simulation.transient_simulator import EpochPair, simulate_epoch_pair
from cpcs.testing.recorded_http import RecordedAnswer, recorded_http
from cpcs_reduce.subtraction import survey_template
from tests.conftest import System, start_system


@pytest.fixture(scope="module")
def pair() -> EpochPair:
    return simulate_epoch_pair(1, shape=(512, 512), star_density=3.0)


def _system(tmp_path: Path, **settings: object) -> System:
    return start_system(
        Settings(data_dir=tmp_path / "data", retry_base_s=0.05, outbox_poll_s=0.05, **settings)  # type: ignore[arg-type]
    )


def _alert(system: System, pair: EpochPair):
    where = pair.science.true_wcs.pixel_to_world(pair.transient_x[0], pair.transient_y[0])
    created = system.client.post(
        "/api/v1/alerts",
        json={
            "name": "ivo://CPCS-survey-template",
            "ra_deg": float(where.ra.deg),
            "dec_deg": float(where.dec.deg),
        },
        headers={"Authorization": f"Bearer {system.observer_token}"},
    )
    assert created.status_code == 201, created.text
    from cpcs.db.models import Alert, User

    with system.context.db.transaction() as session:
        alert = session.get_one(Alert, int(created.json()["id"]))
        user = session.query(User).filter(User.name == "K. Rybicki").one()
        session.expunge(alert)
        return alert, user.id


def test_a_survey_cutout_becomes_a_template_with_its_provenance(tmp_path: Path, pair: EpochPair) -> None:
    answer = RecordedAnswer(image_to_fits_bytes(pair.template), "application/fits")
    with recorded_http({"/hips2fits": answer}) as server:
        system = _system(tmp_path, catalog_online=True, hips2fits_url=f"{server.url}/hips2fits")
        try:
            alert, user_id = _alert(system, pair)
            facts = {"filter_name": "r", "wcs": pair.science.true_wcs, "shape": pair.science.data.shape}
            template, note = survey_template(system.context, alert=alert, user_id=user_id, **facts)
            assert note is None and template is not None
            assert template.source == "survey" and template.band == "r" and template.instrument_id is None
            assert template.provenance is not None and template.provenance["hips"] == "CDS/P/PanSTARRS/DR1/r"
            assert template.fwhm_px is not None and template.overlap_fraction >= 0.5
            # Kept: the next frame of the alert in r takes it without asking again.
            again, _ = survey_template(system.context, alert=alert, user_id=user_id, **facts)
            assert again is not None and again.id == template.id
            assert len(server.requests) == 1
            listed = system.client.get(
                f"/api/v1/alerts/{alert.id}/templates",
                headers={"Authorization": f"Bearer {system.observer_token}"},
            ).json()
            assert [(t["source"], t["provenance"]["service"]) for t in listed] == [("survey", "hips2fits")]
            assert system.context.files.path_for(template.sha256).exists()
            # A band Pan-STARRS lacks: a note, no request.
            none, why = survey_template(
                system.context, alert=alert, user_id=user_id, **(facts | {"filter_name": "V"})
            )
            assert none is None and why is not None and "no V band" in why and len(server.requests) == 1
        finally:
            system.client.close()
            system.assembly.stop()


def test_a_cutout_off_the_alert_is_refused_with_a_note(tmp_path: Path, pair: EpochPair) -> None:
    elsewhere = simulate_epoch_pair(2, shape=(256, 256), star_density=3.0).template
    shifted = elsewhere.true_wcs.deepcopy()
    shifted.wcs.crval = [shifted.wcs.crval[0] + 5.0, shifted.wcs.crval[1]]
    from dataclasses import replace

    answer = RecordedAnswer(image_to_fits_bytes(replace(elsewhere, true_wcs=shifted)), "application/fits")
    with recorded_http({"/hips2fits": answer}) as server:
        system = _system(tmp_path, catalog_online=True, hips2fits_url=f"{server.url}/hips2fits")
        try:
            alert, user_id = _alert(system, pair)
            template, note = survey_template(
                system.context,
                alert=alert,
                user_id=user_id,
                filter_name="r",
                wcs=pair.science.true_wcs,
                shape=pair.science.data.shape,
            )
            assert template is None and note is not None and "cannot be a template" in note
            assert (
                system.client.get(
                    f"/api/v1/alerts/{alert.id}/templates",
                    headers={"Authorization": f"Bearer {system.observer_token}"},
                ).json()
                == []
            )
        finally:
            system.client.close()
            system.assembly.stop()
