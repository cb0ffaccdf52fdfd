"""``cpcs upload``: send catalogues or images of an alert to a CPCS server and print the results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cpcs.client.uploader import (
    CpcsUploader,
    PlannedUpload,
    RetryPolicy,
    UploadError,
    UploadOptions,
    UploadOutcome,
    expand_inputs,
    format_table,
    plan_upload,
)


def _plans(
    files: tuple[str, ...], mjd: float | None, exptime: float | None, filter_name: str | None, sibling: bool
) -> list[PlannedUpload]:
    try:
        paths = expand_inputs(files)
        return [
            plan_upload(path, mjd=mjd, exptime_s=exptime, filter_name=filter_name, use_sibling=sibling)
            for path in paths
        ]
    except UploadError as error:
        raise click.UsageError(error.message) from None


def _describe(plan: PlannedUpload) -> str:
    facts: list[str] = [plan.kind]
    if plan.mjd is not None:
        facts.append(f"MJD {plan.mjd:.5f}")
    if plan.exptime_s is not None:
        facts.append(f"{plan.exptime_s:g} s")
    if plan.filter_name:
        facts.append(f"filter {plan.filter_name}")
    if plan.header_from is not None:
        facts.append(f"header of {plan.header_from.name}")
    refusal = f"; not sent: {plan.refusal[1]}" if plan.refusal is not None else ""
    return f"{plan.path}: {', '.join(facts)}" + "".join(f"; {note}" for note in plan.notes) + refusal


@click.command("upload")
@click.option(
    "--server",
    envvar="CPCS_SERVER",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Base URL of the CPCS server (or CPCS_SERVER).",
)
@click.option(
    "--token", envvar="CPCS_TOKEN", required=True, help="Your token, the CPCS hashtag (or CPCS_TOKEN)."
)
@click.option("--alert", required=True, help="The alert: ivo://Gaia16aye, Gaia16aye or its id.")
@click.option("--mjd", type=float, default=None, help="Mid-exposure MJD for every file (else from headers).")
@click.option("--exptime", type=float, default=None, help="Exposure time, s (else from headers).")
@click.option("--filter", "filter_name", default=None, help="Filter used (else from headers).")
@click.option("--match-radius", type=float, default=None, help="Match radius, arcsec (server default 2).")
@click.option(
    "--force-filter", default=None, help="'SURVEY/BAND' or 'any/BAND' instead of the automatic choice."
)
@click.option("--comment", default=None, help="A comment stored with every observation.")
@click.option("--dry-run", is_flag=True, help="Calibrate without adding points to the light curve.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per file on stdout instead of a table."
)
@click.option("--no-wait", is_flag=True, help="Do not wait for the calibrations; print the status URLs.")
@click.option(
    "--no-sibling", is_flag=True, help="Do not read MJD/exposure/filter from an image beside a catalogue."
)
@click.option(
    "--wait-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds to wait for the calibrations.",
)
@click.option(
    "--retries",
    type=click.IntRange(1, 20),
    default=5,
    show_default=True,
    help="Tries per request on connection errors, 429 and 5xx.",
)
@click.argument("files", nargs=-1, required=True)
def upload(
    server: str,
    token: str,
    alert: str,
    mjd: float | None,
    exptime: float | None,
    filter_name: str | None,
    match_radius: float | None,
    force_filter: str | None,
    comment: str | None,
    dry_run: bool,
    as_json: bool,
    no_wait: bool,
    no_sibling: bool,
    wait_timeout: float,
    retries: int,
    files: tuple[str, ...],
) -> None:
    """Upload FILES (names or glob patterns such as 'night1/*.cat') for an alert and print the results.

    For a catalogue, the image beside it with the same stem (frame.cat -> frame.fits) gives the
    mid-exposure MJD, exposure time and filter from its header; images are sent as they are and the
    server reads their headers. Exit status: 0 when every file was calibrated, 1 otherwise.
    """
    plans = _plans(files, mjd, exptime, filter_name, not no_sibling)
    for plan in plans:
        click.echo(_describe(plan), err=True)
    options = UploadOptions(
        alert=alert,
        match_radius_arcsec=match_radius,
        force_filter=force_filter,
        dry_run=dry_run,
        comment=comment,
    )

    def retrying(what: str, attempt: int, problem: str, delay: float) -> None:
        click.echo(f"{what}: try {attempt} failed ({problem}); again in {delay:.1f} s", err=True)

    outcomes: list[UploadOutcome] = []
    with CpcsUploader(server, token, retry=RetryPolicy(attempts=retries), on_retry=retrying) as client:
        with click.progressbar(plans, label="Uploading", file=sys.stderr, item_show_func=_name) as bar:
            for plan in bar:
                outcomes.append(client.upload(plan, options))
        if not no_wait:
            accepted = [o for o in outcomes if o.status_url is not None]
            with click.progressbar(length=len(accepted), label="Calibrating", file=sys.stderr) as done:
                client.wait(accepted, timeout_s=wait_timeout, on_final=lambda _: done.update(1))
    records = [o.summary() for o in outcomes]
    if as_json:
        for record in records:
            click.echo(json.dumps(record))
    else:
        click.echo(format_table(records))
        if no_wait:
            for outcome in outcomes:
                if outcome.status_url:
                    click.echo(f"{outcome.plan.path.name}: {outcome.status_url}")
    wanted = ("calibrated", "received", "processing") if no_wait else ("calibrated",)
    if not all(o.status in wanted for o in outcomes):
        sys.exit(1)


def _name(plan: PlannedUpload | None) -> str | None:
    return None if plan is None else Path(plan.path).name
