"""The web pages: alerts, an alert's light curve, an observation's calibration, upload, observatories.

Server-rendered HTML (Jinja2) with small scripts of our own; the plots are drawn by plotly.js, served
from the installed ``plotly`` package (see :mod:`cpcs_api.web.assets`). Pages embed their plot data
as JSON in a ``<script type="application/json">`` element, so the public plots need no token; the
upload form sends the observer's token itself, as ``Authorization: Bearer``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from cpcs import __version__
from cpcs.domain import accounts as account_store
from cpcs.domain import alerts as alert_store
from cpcs.domain import instruments as instrument_store
from cpcs.domain import observations as observation_store
from cpcs.domain.points import light_curve_points
from cpcs.domain.trends import instrument_trends
from cpcs.errors import NotFoundError
from cpcs.schemas import MAX_RECORD_ID, CalibrationOut, PointOut
from cpcs.web import ContextDep, SessionDep
from cpcs_api.image_views import page_images
from cpcs_api.periods import page_periodograms
from cpcs_api.web.assets import PLOTLY_BUNDLE, Assets
from cpcs_api.web.calibration_plots import ReferenceSources, diagnostics_for, order_by_rank
from cpcs_api.web.calibration_svg import calibration_svg, message_svg

TEMPLATES_DIR = Path(__file__).with_name("templates")
PAGE_SIZE = 25
MJD_EPOCH = dt.datetime(1858, 11, 17, tzinfo=dt.UTC)
MATCH_RADII_ARCSEC = (1, 2, 4, 6)
FINAL_STATUSES = ("calibrated", "failed", "error")
SVG = "image/svg+xml"


def mjd_to_utc(mjd: float | None) -> str:
    if mjd is None or not math.isfinite(mjd):
        return "—"
    return (MJD_EPOCH + dt.timedelta(days=mjd)).strftime("%Y-%m-%d %H:%M:%S")


def sexagesimal(ra_deg: float, dec_deg: float) -> str:
    """``19:40:01.14 +30:07:53.4``."""
    total = round(ra_deg / 15 * 3600 * 100) % (24 * 3600 * 100)
    h, rest = divmod(total, 3600 * 100)
    m, s = divmod(rest, 60 * 100)
    sign = "-" if dec_deg < 0 else "+"
    dtotal = round(abs(dec_deg) * 3600 * 10)
    d, drest = divmod(dtotal, 3600 * 10)
    dm, ds = divmod(drest, 60 * 10)
    return f"{h:02d}:{m:02d}:{s / 100:05.2f} {sign}{d:02d}:{dm:02d}:{ds / 10:04.1f}"


def embed_json(value: Any) -> Markup:
    """JSON safe inside a <script> element (no ``</script>``, no NaN)."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def web_link(url: str | None) -> str | None:
    """An http(s) URL as given, anything else (javascript:, data:...) dropped."""
    if not url:
        return None
    scheme = urlsplit(url.strip()).scheme.lower()
    return url.strip() if scheme in ("http", "https") else None


def fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def light_curve_payload(points: list[PointOut]) -> list[dict[str, Any]]:
    """What the public plot needs of each point; nothing a download would add."""

    def number(value: float | None, decimals: int = 4) -> float | None:
        return None if value is None or not math.isfinite(value) else round(value, decimals)

    return [
        {
            "id": p.id,
            "observation_id": p.observation_id,
            "mjd": number(p.mjd, 6),
            "mag": number(p.mag),
            "err": number(p.mag_err_total),
            "band": p.band,
            "survey": p.survey,
            "observer": p.observer,
            "observatory": p.observatory,
            "upper_limit": p.is_upper_limit,
        }
        for p in points
        if p.mjd is not None and math.isfinite(p.mag)
    ]


class Pages:
    """Renders the templates with the helpers every page shares."""

    def __init__(self, assets: Assets):
        self.assets = assets
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(
            static=assets.url,
            version=__version__,
            mjd_to_utc=mjd_to_utc,
            sexagesimal=sexagesimal,
            fmt=fmt,
            web_link=web_link,
        )
        self.env.filters["embed_json"] = embed_json

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code)

    def not_found(self, message: str) -> HTMLResponse:
        return self.render("error.html", 404, section="", title="Not found", message=message)


def router() -> APIRouter:
    web = APIRouter(include_in_schema=False)
    assets = Assets()
    pages = Pages(assets)
    references_for = ReferenceSources().for_context

    @web.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/alerts", status_code=302)

    @web.get("/static/{name}")
    def static(request: Request, name: str) -> Response:
        return assets.response(request, name)

    @web.get("/alerts", response_class=HTMLResponse)
    def alerts(
        session: SessionDep,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        q: Annotated[str, Query(max_length=300)] = "",
        observed: bool = False,
    ) -> HTMLResponse:
        listing = alert_store.list_alerts(
            session,
            offset=(page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
            observed_only=observed,
            search=q.strip() or None,
        )
        pages_total = max(1, math.ceil(listing.total / PAGE_SIZE))

        def page_url(number: int) -> str | None:
            if not 1 <= number <= pages_total:
                return None
            query = {"q": q.strip(), "observed": "true" if observed else "", "page": str(number)}
            return "/alerts?" + urlencode({k: v for k, v in query.items() if v})

        return pages.render(
            "alerts.html",
            section="alerts",
            title="Alerts",
            listing=listing,
            page=page,
            pages_total=pages_total,
            prev_url=page_url(page - 1),
            next_url=page_url(page + 1),
            q=q,
            observed=observed,
        )

    @web.get("/alerts/{alert_id}", response_class=HTMLResponse)
    def alert_page(session: SessionDep, alert_id: int) -> HTMLResponse:
        if not 1 <= alert_id <= MAX_RECORD_ID:
            return pages.not_found(f"No alert {alert_id}.")
        try:
            alert = alert_store.alert_view(session, alert_store.get_alert(session, alert_id))
        except NotFoundError as exc:
            return pages.not_found(exc.message)
        points = light_curve_points(session, alert_id)
        return pages.render(
            "alert.html",
            section="alerts",
            title=alert.name,
            alert=alert,
            points=points,
            plot_data={"alert": alert.name, "points": light_curve_payload(points)},
            periodograms=page_periodograms(alert.id, points),
            plotly=assets.url(PLOTLY_BUNDLE),
        )

    @web.get("/observations/{observation_id}", response_class=HTMLResponse)
    async def observation_page(context: ContextDep, observation_id: int) -> HTMLResponse:
        def read() -> dict[str, Any] | None:
            with context.db.transaction() as session:
                try:
                    row = observation_store.get_observation(session, observation_id)
                except NotFoundError:
                    return None
                try:
                    quality = observation_store.get_reduction(session, observation_id).quality
                except NotFoundError:
                    quality = None  # a catalogue, or an image not measured yet
                return {
                    "observation": observation_store.observation_view(session, row),
                    "history": observation_store.calibration_history(session, observation_id),
                    "quality": quality,
                    "images": page_images(session, observation_id),
                }

        found = await run_in_threadpool(read) if 1 <= observation_id <= MAX_RECORD_ID else None
        if found is None:
            return pages.not_found(f"No observation {observation_id}.")
        observation = found["observation"]
        calibration = observation.calibration
        plot_data: dict[str, Any] | None = None
        problem: str | None = None
        if calibration is not None:
            result = await run_in_threadpool(
                diagnostics_for, context, references_for(context), observation_id
            )
            problem = result.problem
            if result.payload is not None:
                plot_data = order_by_rank(result.payload, calibration)
        return pages.render(
            "observation.html",
            section="alerts",
            title=f"Observation {observation_id}",
            observation=observation,
            calibration=calibration,
            history=found["history"],
            quality=found["quality"],
            images=found["images"],
            plot_data=plot_data,
            problem=problem,
            in_progress=observation.status not in FINAL_STATUSES,
            plotly=assets.url(PLOTLY_BUNDLE),
        )

    @web.get("/observations/{observation_id}/calibration.svg")
    async def calibration_image(context: ContextDep, observation_id: int) -> Response:
        """The chosen fit as a static image (the legacy upload page shows it, no script needed)."""

        def read() -> CalibrationOut | None:
            with context.db.transaction() as session:
                try:
                    row = observation_store.get_observation(session, observation_id)
                except NotFoundError:
                    return None
                return observation_store.observation_view(session, row).calibration

        found = 1 <= observation_id <= MAX_RECORD_ID
        calibration = await run_in_threadpool(read) if found else None
        if calibration is None:
            text = f"Observation {observation_id} has no calibration."
            return Response(message_svg(text), status_code=404, media_type=SVG)
        result = await run_in_threadpool(diagnostics_for, context, references_for(context), observation_id)
        if result.payload is None:
            return Response(message_svg(result.problem or "No plot."), media_type=SVG)
        return Response(calibration_svg(order_by_rank(result.payload, calibration)), media_type=SVG)

    @web.get("/upload", response_class=HTMLResponse)
    def upload_page(
        context: ContextDep, session: SessionDep, alert: Annotated[str, Query(max_length=300)] = ""
    ) -> HTMLResponse:
        known = alert_store.list_alerts(session, offset=0, limit=500).items
        return pages.render(
            "upload.html",
            section="upload",
            title="Upload",
            upload_url=context.settings.upload_url,  # ingest, which may have its own host or port
            alert=alert,
            known_alerts=[a.name for a in known],
            radii=MATCH_RADII_ARCSEC,
        )

    @web.get("/observatories", response_class=HTMLResponse)
    def observatories(session: SessionDep) -> HTMLResponse:
        return pages.render(
            "observatories.html",
            section="observatories",
            title="Observatories",
            sites=account_store.list_observatories(session),
            instruments=instrument_store.list_instruments(session),
        )

    @web.get("/instruments/{instrument_id}", response_class=HTMLResponse)
    def instrument_page(session: SessionDep, instrument_id: int) -> HTMLResponse:
        """The instrument's trends (cpcs.domain.trends), drawn from the data the API gives."""
        if not 1 <= instrument_id <= MAX_RECORD_ID:
            return pages.not_found(f"No instrument {instrument_id}.")
        try:
            trends = instrument_trends(session, instrument_id)
        except NotFoundError as exc:
            return pages.not_found(exc.message)
        return pages.render(
            "instrument.html",
            section="observatories",
            title=f"{trends.instrument.name} · {trends.instrument.observatory}",
            trends=trends,
            plot_data=trends.model_dump(mode="json"),
            plotly=assets.url(PLOTLY_BUNDLE),
        )

    @web.get("/admin/status", response_class=HTMLResponse)
    def status_page() -> HTMLResponse:
        """The page asks for an admin token and reads /api/v1/admin/status (403 for anyone else)."""
        return pages.render("status.html", section="status", title="Status")

    return web
