"""The calibrate consumer: idempotent on redelivery, failures classified, dead letters replayable."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cpcs.catalogs.client import LocalReferences
from cpcs.catalogs.cone import ConeService
from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.model import ReferenceCatalogue
from cpcs.catalogs.tiles import TileStore
from cpcs.context import Context
from cpcs.db import migrate
from cpcs.db.models import Calibration, CalibrationRequest, Observation, OutboxMessage, Point
from cpcs.domain.accounts import add_user
from cpcs.domain.alerts import create_alert, get_alert
from cpcs.messages import CalibrationParamsV1, FieldRequestedV1, encode
from cpcs.messaging.bus import Envelope
from cpcs.settings import Settings
from cpcs.simulation.catalogue_simulator import simulate_field, to_sextractor_ascii
from cpcs.simulation.reference_files import write_reference_tables
from cpcs_calibrate.worker import QUEUE, CalibrateWorker
from cpcs_ingest.service import IngestService, Upload

RA, DEC = 150.1, 2.2


class BrokenReferences:
    """A reference source with a bug of ours in it (until ``fixed``)."""

    def __init__(self, working: LocalReferences):
        self.working = working
        self.fixed = False

    def cone(
        self, ra_deg: float, dec_deg: float, radius_deg: float, surveys: Sequence[str] | None = None
    ) -> Mapping[str, ReferenceCatalogue]:
        if not self.fixed:
            raise RuntimeError("bug in the reference lookup")
        return self.working.cone(ra_deg, dec_deg, radius_deg, surveys)


@pytest.fixture
def context(tmp_path: Path) -> Iterator[Context]:
    settings = Settings(data_dir=tmp_path / "data", retry_base_s=0.02, max_delivery_attempts=3)
    settings.data_dir.mkdir(parents=True)
    migrate.upgrade(settings.sqlalchemy_url)
    ctx = Context(settings)
    yield ctx
    ctx.close()


def _accept(context: Context, tmp_path: Path) -> tuple[LocalReferences, Envelope]:
    field = simulate_field(2, n_stars=300, ra_deg=RA, dec_deg=DEC)
    store = TileStore(context.settings.catalogs_dir)
    for survey, path in write_reference_tables(field, tmp_path / "refs").items():
        import_catalogue_file(store, survey, path, path.name)
    with context.db.transaction() as session:
        token = add_user(session, "obs", observatory="site").token
        create_alert(session, "ivo://T1", RA, DEC, None)
        from cpcs.domain.accounts import authenticate

        user = authenticate(session, token)
        get_alert(session, 1)
    data = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
    upload = Upload("ivo://T1", io.BytesIO(data), "a.cat", 60000.1, 30.0, None, None, CalibrationParamsV1())
    IngestService(context).accept(user, upload)
    with context.db.transaction() as session:
        row = session.scalars(
            select(OutboxMessage).where(OutboxMessage.routing_key == "catalogue.received")
        ).one()
        envelope = Envelope(row.message_id, row.routing_key, row.body.encode(), {}, 1)
    return LocalReferences(ConeService(store, online=False)), envelope


def _count(context: Context, model: type) -> int:
    with context.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_redelivered_message_makes_one_point(context: Context, tmp_path: Path) -> None:
    references, envelope = _accept(context, tmp_path)
    worker = CalibrateWorker(context, references)
    worker.handle(envelope)
    worker.handle(envelope)  # the broker delivered it again
    assert _count(context, Point) == 1
    assert _count(context, Calibration) == 1
    with context.db.transaction() as session:
        assert session.scalars(select(Observation)).one().status == "calibrated"


def test_unparseable_message_is_rejected(context: Context) -> None:
    from cpcs.messaging.bus import RejectMessage

    worker = CalibrateWorker(
        context, LocalReferences(ConeService(TileStore(context.settings.catalogs_dir), online=False))
    )
    with pytest.raises(RejectMessage):
        worker.handle(Envelope("m1", "catalogue.received", b"{not json", {}, 1))
    _, body = encode(FieldRequestedV1(ra_deg=1.0, dec_deg=2.0, radius_deg=0.1))
    with pytest.raises(RejectMessage):  # a valid message of a kind calibrate does not handle
        worker.handle(Envelope("m2", "field.requested", body, {}, 1))


def test_bug_goes_to_dead_letters_shows_error_and_replays(context: Context, tmp_path: Path) -> None:
    references, envelope = _accept(context, tmp_path)
    broken = BrokenReferences(references)
    worker = CalibrateWorker(context, broken)
    worker.subscribe()
    context.bus.start()
    context.bus.publish(envelope.routing_key, envelope.body, message_id=envelope.message_id)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not context.bus.dead_letters(QUEUE):
        time.sleep(0.02)
    dead = context.bus.dead_letters(QUEUE)
    assert len(dead) == 1 and "bug in the reference lookup" in dead[0].headers["x-cpcs-error"]
    with context.db.transaction() as session:
        observation = session.scalars(select(Observation)).one()
        assert (observation.status, observation.error_code) == ("error", "internal_error")
        assert "bug in the reference lookup" in (observation.error_message or "")
    assert _count(context, Point) == 0

    broken.fixed = True
    assert context.bus.replay_dead_letters(QUEUE) == 1
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _count(context, Point) == 0:
        time.sleep(0.02)
    assert _count(context, Point) == 1
    with context.db.transaction() as session:
        assert session.scalars(select(CalibrationRequest)).one().status == "calibrated"
        assert session.scalars(select(Observation)).one().status == "calibrated"


def test_colour_term_learned_from_the_instruments_frames_is_used_and_recorded(
    context: Context, tmp_path: Path
) -> None:
    """Six frames of one instrument in one filter: the sixth uses the colour term learned from the five."""
    import numpy as np

    from cpcs.domain.accounts import authenticate
    from cpcs.domain.instruments import add_instrument
    from cpcs.domain.points import calibration_view

    field = simulate_field(3, n_stars=120, ra_deg=RA, dec_deg=DEC)
    store = TileStore(context.settings.catalogs_dir)
    for survey, path in write_reference_tables(field, tmp_path / "refs").items():
        import_catalogue_file(store, survey, path, path.name)
    with context.db.transaction() as session:
        token = add_user(session, "obs", observatory="site").token
        add_instrument(session, observatory="site", name="cam")
        create_alert(session, "ivo://T1", RA, DEC, None)
        user = authenticate(session, token)
    rng = np.random.default_rng(4)
    worker = CalibrateWorker(context, LocalReferences(ConeService(store, online=False)))
    for k in range(6):
        mag = field.mag + 0.005 * rng.normal(size=field.mag.size)  # another night's noise
        data = to_sextractor_ascii(field.ra_deg, field.dec_deg, mag, field.magerr).encode()
        params = CalibrationParamsV1(force_filter="PS1/r")
        upload = Upload(
            "ivo://T1", io.BytesIO(data), f"{k}.cat", 60000.1 + k, 30.0, "r", None, params, instrument="cam"
        )
        IngestService(context).accept(user, upload)
        with context.db.transaction() as session:
            row = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.routing_key == "catalogue.received")
                .order_by(OutboxMessage.id.desc())
            ).first()
            assert row is not None
            envelope = Envelope(row.message_id, row.routing_key, row.body.encode(), {}, 1)
        worker.handle(envelope)
    with context.db.transaction() as session:
        calibrations = session.scalars(select(Calibration).order_by(Calibration.id)).all()
        assert len(calibrations) == 6
        assert all(c.result.get("colour_term_prior") is None for c in calibrations[:5])
        prior = calibrations[5].result["colour_term_prior"]
        own = [c.colour_term for c in calibrations[:5]]
        assert prior[0] == pytest.approx(np.mean(own), abs=3 * prior[1]) and prior[1] > 0
        assert calibrations[5].colour_term_err < min(c.colour_term_err for c in calibrations[:5])
        assert calibration_view(calibrations[5]).colour_term_prior == prior
        assert calibration_view(calibrations[0]).colour_term_prior is None
