"""The ``cpcs`` command line: start the system or one service, migrate, manage users and catalogues."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cpcs import tracing
from cpcs.client.cli import upload as upload_command
from cpcs.errors import CpcsError
from cpcs.settings import Settings


def _settings() -> Settings:
    return Settings()


def _prepare(settings: Settings, service: str) -> None:
    from cpcs.logs import configure_logging
    from cpcs.offline import configure_astropy_offline

    json_format = settings.log_json if settings.log_json is not None else service != "cpcs"
    configure_logging(settings.log_level, json_format=json_format, service=service)
    configure_astropy_offline()
    try:
        tracing.configure(settings, service)
    except CpcsError as error:
        _fail(error)


def _fail(error: CpcsError) -> None:
    click.echo(f"error ({error.code}): {error.message}", err=True)
    sys.exit(2)


@click.group()
def main() -> None:
    """CPCS: photometric calibration server for transient follow-up."""


@main.command()
def up() -> None:
    """Start the whole system in one process (SQLite, in-process bus, files in CPCS_DATA_DIR)."""
    from cpcs.bootstrap import bootstrap_admin
    from cpcs.context import Context
    from cpcs.db import migrate
    from cpcs_system.launcher import assemble_embedded, serve

    settings = _settings()
    _prepare(settings, "cpcs")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        migrate.upgrade(settings.sqlalchemy_url)
        context = Context(settings)
        keys = context.secret_keys
    except CpcsError as error:
        _fail(error)
    token = bootstrap_admin(context, settings)
    base = f"http://{settings.host}:{settings.port}"
    click.echo(f"CPCS is starting on {base} (data in {settings.data_dir.resolve()})")
    if keys.generated:
        click.echo(f"A secret key was generated in {keys.source}: it encrypts webhook secrets and SkyPortal")
        click.echo("tokens in the database. Keep it with the data folder; without it they cannot be read.")
    if token:
        click.echo("An admin was created for this empty data folder. Its token, shown only this once:")
        click.echo(f"    {token}")
        if settings.demo:
            from cpcs_system.demo import DEMO_ALERT, seed_demo

            queued = seed_demo(context, settings.data_dir / "demo")
            click.echo(f"  Demo: {DEMO_ALERT} with {queued} simulated uploads (remove: cpcs demo remove)")
    click.echo(f"  Web pages:          {base}/alerts (light curves, uploads, observatories)")
    click.echo(f"  API documentation:  {base}/docs")
    click.echo(f"  Legacy alert list:  {base}/followup/list_of_alerts")
    click.echo(f"  Legacy upload:      {base}/followup/cgi/upload")
    click.echo(f"  Health:             {base}/readyz")
    serve(assemble_embedded(context), settings)


@main.group()
def service() -> None:
    """One service as its own process (distributed mode)."""


@service.command("run")
@click.argument("name", type=click.Choice(["ingest", "reduce", "calibrate", "catalog-cache", "api"]))
def service_run(name: str) -> None:
    """Run service NAME (HTTP services listen on CPCS_HOST:CPCS_PORT)."""
    from cpcs.context import Context
    from cpcs_system.launcher import assemble_service, serve

    settings = _settings()
    _prepare(settings, name)
    try:
        assembly = assemble_service(name, Context(settings))
    except CpcsError as error:  # e.g. the api without CPCS_SECRET_KEY on PostgreSQL
        _fail(error)
    serve(assembly, settings)


@service.command("check")
def service_check() -> None:
    """Exit 0 when the database and the broker answer, else 1 saying which does not (a probe for workers)."""
    from sqlalchemy import text

    from cpcs.db.engine import Database
    from cpcs.messaging.factory import create_bus

    settings = _settings()
    down = []
    database = Database(settings.sqlalchemy_url)
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        down.append(f"database ({type(exc).__name__})")
    finally:
        database.engine.dispose()
    if not create_bus(settings.broker_url, exchange=settings.exchange).health():
        down.append("broker")
    if down:
        click.echo(f"not ready: {', '.join(down)} unreachable", err=True)
        sys.exit(1)
    click.echo("ready")


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (alembic upgrade head)."""
    from cpcs.db import migrate

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    before = migrate.current_revision(settings.sqlalchemy_url)
    migrate.upgrade(settings.sqlalchemy_url)
    after = migrate.current_revision(settings.sqlalchemy_url)
    if before == after:
        click.echo(f"database already at the newest schema ({after}); nothing to do")
    elif before is None:
        click.echo(f"empty database: schema created at revision {after}")
    else:
        click.echo(f"database upgraded from revision {before} to {after}")


@main.group()
def secrets() -> None:
    """The keys that encrypt webhook secrets and SkyPortal tokens in the database (CPCS_SECRET_KEY)."""


@secrets.command("new-key")
def secrets_new_key() -> None:
    """Print a fresh key for CPCS_SECRET_KEY."""
    from cpcs.db.secret_box import new_key

    click.echo(new_key())


@secrets.command("rotate")
def secrets_rotate() -> None:
    """Encrypt every stored secret again with the first key of CPCS_SECRET_KEY.

    Rotation: put the new key first (CPCS_SECRET_KEY="NEW,OLD"), restart, run this, then drop OLD.
    """
    from cpcs.db.engine import Database
    from cpcs.db.secret_box import keys_from_settings
    from cpcs.db.stored_secrets import rotate_secrets

    settings = _settings()
    try:
        box = keys_from_settings(settings).box
        database = Database(settings.sqlalchemy_url, secret_box=box)
        try:
            count = rotate_secrets(database)
        finally:
            database.dispose()
    except CpcsError as error:
        _fail(error)
    click.echo(f"{count} stored secrets encrypted with key {box.fingerprint}")


@main.group()
def users() -> None:
    """Observers and their tokens."""


@users.command("add")
@click.argument("name")
@click.option("--observatory", required=True, help="Observatory (site and telescope) name.")
@click.option("--lon", type=float, default=None, help="Longitude, degrees east.")
@click.option("--lat", type=float, default=None, help="Latitude, degrees.")
@click.option("--elevation", type=float, default=None, help="Elevation, metres.")
@click.option("--admin", is_flag=True, help="Give the admin role.")
def users_add(
    name: str, observatory: str, lon: float | None, lat: float | None, elevation: float | None, admin: bool
) -> None:
    """Add a user and print their token (the CPCS hashtag) once."""
    from cpcs.db.engine import Database
    from cpcs.domain.accounts import add_user

    settings = _settings()
    database = Database(settings.sqlalchemy_url)
    try:
        with database.transaction() as session:
            user = add_user(
                session,
                name,
                observatory=observatory,
                lon_deg=lon,
                lat_deg=lat,
                elevation_m=elevation,
                role="admin" if admin else "observer",
            )
    except CpcsError as error:
        _fail(error)
    click.echo(user.token)


@main.group()
def instruments() -> None:
    """Instruments: what headers do not say (gain, pixel scale, saturation, filter names)."""


@instruments.command("add")
@click.argument("name")
@click.option("--observatory", required=True, help="The observatory the instrument belongs to.")
@click.option("--gain", type=float, default=None, help="Gain, e-/ADU.")
@click.option("--pixel-scale", type=float, default=None, help="Pixel scale, arcsec/pixel.")
@click.option("--saturation", type=float, default=None, help="Saturation level, ADU.")
@click.option("--filter", "filters", multiple=True, help="HEADER=BAND, e.g. --filter 2=V (repeatable).")
@click.option("--default-filter", default=None, help="Filter assumed when a header names none.")
def instruments_add(
    name: str,
    observatory: str,
    gain: float | None,
    pixel_scale: float | None,
    saturation: float | None,
    filters: tuple[str, ...],
    default_filter: str | None,
) -> None:
    """Record an instrument of an observatory (headers win where they are present)."""
    from cpcs.db.engine import Database
    from cpcs.domain.instruments import add_instrument

    mapping = {}
    for item in filters:
        header_name, sep, band = item.partition("=")
        if not sep or not header_name or not band:
            raise click.BadParameter(f"{item!r}: use HEADER=BAND", param_hint="--filter")
        mapping[header_name.strip()] = band.strip()
    database = Database(_settings().sqlalchemy_url)
    try:
        with database.transaction() as session:
            added = add_instrument(
                session,
                observatory=observatory,
                name=name,
                gain_e_per_adu=gain,
                pixel_scale_arcsec=pixel_scale,
                saturation_adu=saturation,
                filters=mapping,
                default_filter=default_filter,
            )
    except CpcsError as error:
        _fail(error)
    click.echo(f"instrument {added.id}: {added.observatory} / {added.name}")


@main.group()
def catalog() -> None:
    """Reference catalogues in the local cache."""


@catalog.command("import")
@click.option(
    "--survey",
    required=True,
    help="Survey name (GaiaSP, RefCat2, APASS, PS1, SkyMapper, SDSS, VST-ATLAS, OGLE-III, 2MASS, "
    "USNO-B1, Gaia) or your own.",
)
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def catalog_import(survey: str, files: tuple[Path, ...]) -> None:
    """Import VOTable, CSV, ECSV or FITS tables of reference stars into the tile store."""
    from cpcs.catalogs.importer import import_catalogue_file
    from cpcs.catalogs.tiles import TileStore

    settings = _settings()
    store = TileStore(settings.catalogs_dir)
    for path in files:
        try:
            result = import_catalogue_file(store, survey, path, path.name)
        except CpcsError as error:
            _fail(error)
        click.echo(
            f"{path.name}: {result.n_stars} stars in {result.n_tiles} tiles, bands {', '.join(result.bands)}"
        )


@catalog.command("refresh")
@click.option(
    "--max-age-days", type=float, default=365.0, show_default=True, help="Refetch tiles fetched before this."
)
@click.option("--survey", "surveys", multiple=True, help="Only these surveys (default: every fetchable one).")
def catalog_refresh(max_age_days: float, surveys: tuple[str, ...]) -> None:
    """Fetch again the cached tiles older than --max-age-days (needs CPCS_CATALOG_ONLINE=true)."""
    from cpcs.catalogs.cone import ConeService
    from cpcs.catalogs.tiles import TileStore

    settings = _settings()
    cones = ConeService(
        TileStore(settings.catalogs_dir), online=settings.catalog_online, timeout_s=settings.catalog_timeout_s
    )
    try:
        report = cones.refresh(max_age_days, list(surveys) or None)
    except CpcsError as error:
        _fail(error)
    if not report.stale:
        click.echo(f"no tile older than {max_age_days:g} days")
    for name, count in report.stale.items():
        line = f"{name}: {report.refreshed.get(name, 0)} of {count} stale tiles refreshed"
        click.echo(line + (f" ({report.errors[name]})" if name in report.errors else ""))
    if report.errors:
        sys.exit(1)


@main.group()
def demo() -> None:
    """The simulated demo alert that `cpcs up` shows on a new data folder."""


@demo.command("remove")
def demo_remove() -> None:
    """Delete the demo alert, its observers, uploads and simulated catalogues."""
    from cpcs.context import Context
    from cpcs_system.demo import remove_demo

    context = Context(_settings())
    removed = remove_demo(context)
    click.echo(
        f"removed {removed['observations']} demo observations, {removed['observers']} demo observers, "
        f"{removed['tiles']} simulated catalogue tiles"
    )


@demo.command("add")
def demo_add() -> None:
    """Seed the demo again (the server calibrates it when it next runs)."""
    from cpcs.context import Context
    from cpcs_system.demo import DEMO_ALERT, is_seeded, seed_demo

    settings = _settings()
    context = Context(settings)
    if is_seeded(context):
        click.echo(f"{DEMO_ALERT} is already there")
        return
    click.echo(f"queued {seed_demo(context, settings.data_dir / 'demo')} demo uploads")


@main.group("dead-letters")
def dead_letters() -> None:
    """Messages that failed every attempt."""


@dead_letters.command("list")
@click.argument("queue")
def dead_letters_list(queue: str) -> None:
    """Show what sits in QUEUE's dead-letter queue."""
    from cpcs.messaging.factory import create_bus

    settings = _settings()
    bus = create_bus(settings.broker_url, exchange=settings.exchange)
    for envelope in bus.dead_letters(queue):
        click.echo(f"{envelope.message_id} {envelope.routing_key} {envelope.headers.get('x-cpcs-error', '')}")


@dead_letters.command("replay")
@click.argument("queue")
def dead_letters_replay(queue: str) -> None:
    """Put QUEUE's dead letters back on the queue (after a fix)."""
    from cpcs.messaging.factory import create_bus

    settings = _settings()
    bus = create_bus(settings.broker_url, exchange=settings.exchange)
    click.echo(f"replayed {bus.replay_dead_letters(queue)} messages")


main.add_command(upload_command)


if __name__ == "__main__":
    main()
