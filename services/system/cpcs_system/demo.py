"""A clearly marked demo: a simulated transient observed over ten nights from three observatories.

``cpcs up`` seeds it on an empty data folder (so every page has something real to show) unless
``CPCS_DEMO=false``; ``cpcs demo remove`` deletes all of it: the alert, its observations, points and
calibrations, the demo observers and observatories, and the simulated reference catalogues (kept
under their own survey names, ``PS1-sim`` and ``GaiaSP-sim``, so nothing real is ever mixed in).
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

from sqlalchemy import delete, select

from cpcs.catalogs.importer import import_catalogue_file
from cpcs.catalogs.tiles import TileStore
from cpcs.context import Context
from cpcs.db.models import (
    Alert,
    Calibration,
    CalibrationRequest,
    ImageReduction,
    Observation,
    ObservationRevision,
    Observatory,
    Point,
    Token,
    Upload,
    User,
)
from cpcs.domain.accounts import add_user, authenticate
from cpcs.domain.alerts import create_alert
from cpcs.messages import CalibrationParamsV1
from cpcs.simulation.catalogue_simulator import simulate_field, to_sextractor_ascii
from cpcs.simulation.reference_files import write_reference_tables

log = logging.getLogger(__name__)

DEMO_ALERT = "ivo://CPCS-demo-2026sim"
DEMO_URL = "about:demo (simulated data; remove with 'cpcs demo remove')"
DEMO_RA_DEG, DEMO_DEC_DEG = 150.1, 2.2
DEMO_PREFIX = "Demo: "
DEMO_SURVEY_SUFFIX = "-sim"
DEMO_OBSERVERS = (
    ("A. Demo", "Demo: La Palma 1.0m", -17.88, 28.76, 0.0, "r"),
    ("B. Demo", "Demo: Ondrejov 0.65m", 14.78, 49.91, 0.05, "R"),
    ("C. Demo", "Demo: school 0.3m", 21.42, 52.09, -0.1, "Clear"),
)
SEED = 2026
START_MJD = 61000.0


def demo_light_curve(days: float) -> float:
    """A supernova-like rise and decline in PS1 r (mag), ``days`` after discovery."""
    peak, rise, decline = 4.0, 3.0, 0.08
    if days < peak:
        return 17.0 + 2.5 * ((peak - days) / rise) ** 2
    return 17.0 + decline * (days - peak) + 0.5 * (1 - math.exp(-(days - peak) / 6.0))


def is_seeded(context: Context) -> bool:
    with context.db.transaction() as session:
        return session.scalar(select(Alert.id).where(Alert.name == DEMO_ALERT)) is not None


def seed_demo(context: Context, folder: Path) -> int:
    """Create the demo alert, observers and uploads (calibrated by the running consumers).

    Returns the number of uploads queued.
    """
    from cpcs_ingest.service import IngestService
    from cpcs_ingest.service import Upload as UploadForm

    base = simulate_field(SEED, n_stars=400, ra_deg=DEMO_RA_DEG, dec_deg=DEMO_DEC_DEG, target="bright")
    store = TileStore(context.settings.catalogs_dir)
    for survey, path in write_reference_tables(base, folder).items():
        import_catalogue_file(store, survey + DEMO_SURVEY_SUFFIX, path, path.name)
    with context.db.transaction() as session:
        create_alert(session, DEMO_ALERT, DEMO_RA_DEG, DEMO_DEC_DEG, DEMO_URL)
        tokens = [
            add_user(session, name, observatory=site, lon_deg=lon, lat_deg=lat).token
            for name, site, lon, lat, _, _ in DEMO_OBSERVERS
        ]
    service = IngestService(context)
    queued = 0
    for night in range(10):
        for index, (_, _, _, _, zp_offset, filter_name) in enumerate(DEMO_OBSERVERS):
            if (night + index) % 2:  # not every site every night
                continue
            days = night + 0.1 * index
            magnitude = demo_light_curve(days)
            field = simulate_field(
                SEED,
                n_stars=400,
                ra_deg=DEMO_RA_DEG,
                dec_deg=DEMO_DEC_DEG,
                zp=25.0 + zp_offset,
                target="undetected" if magnitude > 20.5 else "bright",
                target_mag=magnitude,
            )
            data = to_sextractor_ascii(field.ra_deg, field.dec_deg, field.mag, field.magerr).encode()
            with context.db.transaction() as session:
                user = authenticate(session, tokens[index])
            form = UploadForm(
                alert=DEMO_ALERT,
                stream=io.BytesIO(data),
                filename=f"demo-night{night + 1}-{filter_name}.cat",
                mjd=START_MJD + days,
                exptime_s=120.0,
                filter_declared=filter_name,
                comment="simulated demo data",
                # r and R observers ask for their band; the unfiltered camera leaves the choice to AUTO.
                params=CalibrationParamsV1(
                    force_filter=None if filter_name == "Clear" else f"any/{filter_name}"
                ),
            )
            service.accept(user, form)
            queued += 1
    log.info("demo seeded: %d uploads for %s", queued, DEMO_ALERT)
    return queued


def remove_demo(context: Context) -> dict[str, int]:
    """Delete every trace of the demo (nothing else is touched)."""
    removed = {"observations": 0, "observers": 0, "tiles": 0}
    with context.db.transaction() as session:
        alert_id = session.scalar(select(Alert.id).where(Alert.name == DEMO_ALERT))
        sites = session.scalars(select(Observatory.id).where(Observatory.name.startswith(DEMO_PREFIX))).all()
        users = session.scalars(select(User.id).where(User.observatory_id.in_(sites))).all()
        observations = session.scalars(
            select(Observation.id).where((Observation.alert_id == alert_id) | Observation.user_id.in_(users))
        ).all()
        uploads = session.scalars(select(Observation.upload_id).where(Observation.id.in_(observations))).all()
        upload_digests = session.scalars(select(Upload.sha256).where(Upload.id.in_(uploads))).all()
        session.execute(delete(Point).where(Point.observation_id.in_(observations)))
        session.execute(delete(CalibrationRequest).where(CalibrationRequest.observation_id.in_(observations)))
        for model in (Calibration, ImageReduction, ObservationRevision):
            session.execute(delete(model).where(model.observation_id.in_(observations)))
        session.execute(delete(Observation).where(Observation.id.in_(observations)))
        still_used = select(Observation.upload_id)
        kept = set(session.scalars(select(Upload.sha256).where(Upload.id.in_(still_used))).all())
        session.execute(delete(Upload).where(Upload.id.in_(uploads), Upload.id.not_in(still_used)))
        session.execute(delete(Token).where(Token.user_id.in_(users)))
        session.execute(delete(User).where(User.id.in_(users)))
        session.execute(delete(Observatory).where(Observatory.id.in_(sites)))
        if alert_id is not None:
            session.execute(delete(Alert).where(Alert.id == alert_id))
        removed["observations"], removed["observers"] = len(observations), len(users)
    for digest in set(upload_digests) - kept:
        context.files.path_for(digest).unlink(missing_ok=True)
    store = TileStore(context.settings.catalogs_dir)
    for survey in store.surveys():
        if survey.endswith(DEMO_SURVEY_SUFFIX):
            removed["tiles"] += store.remove_survey(survey)
    return removed
