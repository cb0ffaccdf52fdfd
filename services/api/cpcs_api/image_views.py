"""REST v1: pictures of an image observation, as PNG: the frame's thumbnail and cutouts.

``/thumbnail.png``: the frame reduced to at most 600 px, the target marked, the calibration stars
(the chosen fit's matched stars, recomputed as the calibration plots are) circled and the accepted
candidates boxed. ``/cutout.png``: ``image=science|template|difference`` around the target, or around
candidate ``candidate`` (its index in ``/candidates``); the template is aligned onto the science
frame's pixels with the same resampling the subtraction used. The pixels are data: the rule is that
of the difference image and the measured sources (any valid token), not that of the public pages.

Rendered pictures are kept beside the observation's products (``products/<id>/view-*.png``), named
by what they depend on (reduction, calibration version, template, size), so a recalibration or a new
template draws anew and an unchanged picture is read back.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, Sip
from fastapi import APIRouter, Query, Response
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from cpcs.context import Context
from cpcs.db.models import Template
from cpcs.domain import subtraction as subtraction_store
from cpcs.domain.observations import current_calibration, get_observation, get_reduction
from cpcs.errors import InputError, NotFoundError
from cpcs.formats.fits_image import inspect_fits_image
from cpcs.schemas import RecordId
from cpcs.science.subtraction.align import align_template
from cpcs.storage import write_atomically
from cpcs.web import ERROR_RESPONSES, ContextDep, SessionDep, UserDep
from cpcs_api.web.calibration_plots import ReferenceSources, recompute_stars
from cpcs_api.web.png import MAX_THUMBNAIL_PX, Marks, cutout, cutout_png, thumbnail_png

PNG = "image/png"
CutoutImage = Literal["science", "template", "difference"]
MIN_THUMBNAIL_PX, MIN_CUTOUT_PX, MAX_CUTOUT_PX, DEFAULT_CUTOUT_PX = 64, 16, 256, 64
#: Template pixels kept around a cutout's footprint for the resampling spline.
TEMPLATE_MARGIN_PX = 8
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {PNG: {"schema": {"type": "string", "format": "binary"}}}}
}


@dataclass(frozen=True)
class FrameFacts:
    """What the pictures of one image observation are drawn from (read in one transaction)."""

    observation_id: int
    sha256: str
    reduction_id: int
    wcs_header: str | None
    target_xy: tuple[float, float] | None
    calibration_id: int | None
    subtraction: dict[str, Any] = field(default_factory=dict)
    template_sha256: str | None = None
    template_wcs_header: str | None = None

    @property
    def candidates(self) -> list[dict[str, Any]]:
        return list(self.subtraction.get("candidates") or [])

    def science_wcs(self) -> WCS | None:
        return _wcs(self.wcs_header)

    def cache_key(self, *parts: object) -> str:
        template = (self.subtraction.get("template") or {}).get("id")
        text = repr((self.reduction_id, self.sha256, template, self.subtraction.get("status"), *parts))
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def _wcs(header: str | None) -> WCS | None:
    if not header:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        return WCS(fits.Header.fromstring(header, sep="\n")).celestial


def frame_facts(session: Session, observation_id: int) -> FrameFacts:
    """The facts of an image observation; 404 for a catalogue or an image reduce has not measured."""
    observation = get_observation(session, observation_id)
    if observation.upload.kind != "image":
        raise NotFoundError(
            f"Observation {observation_id} is a source catalogue: only images have pictures.",
            code="not_an_image",
        )
    reduction = get_reduction(session, observation_id)
    target = reduction.target or {}
    target_xy = (
        (float(target["x"]), float(target["y"]))
        if target.get("x") is not None and target.get("y") is not None
        else None
    )
    calibration = current_calibration(session, observation)
    record = dict(reduction.subtraction or {})
    template_id = (record.get("template") or {}).get("id")
    template = session.get(Template, template_id) if template_id is not None else None
    return FrameFacts(
        observation_id=observation_id,
        sha256=observation.upload.sha256,
        reduction_id=reduction.id,
        wcs_header=reduction.wcs_header,
        target_xy=target_xy,
        calibration_id=calibration.id if calibration is not None else None,
        subtraction=record,
        template_sha256=template.sha256 if template is not None else None,
        template_wcs_header=template.wcs_header if template is not None else None,
    )


def read_pixels(context: Context, sha256: str) -> NDArray[np.float32]:
    """The first 2-D image of a stored FITS file, as float32 (404 when the file is gone)."""
    path = context.files.path_for(sha256)
    try:
        facts = inspect_fits_image(path, max_pixels=context.settings.max_image_pixels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False) as hdus:
                return np.asarray(hdus[facts.hdu_index].data, dtype=np.float32).squeeze()
    except OSError:
        raise NotFoundError(
            "The image's stored file cannot be read any more, so it has no pictures.", code="pixels_gone"
        ) from None


def shifted_wcs(wcs: WCS, dx: int, dy: int) -> WCS:
    """The WCS of a sub-image whose pixel (0, 0) is the frame's pixel (dx, dy) (SIP kept)."""
    moved = wcs.deepcopy()
    moved.wcs.crpix = moved.wcs.crpix - np.array([dx, dy], dtype=float)
    if moved.sip is not None:
        sip = moved.sip
        moved.sip = Sip(sip.a, sip.b, sip.ap, sip.bp, np.asarray(sip.crpix) - np.array([dx, dy], dtype=float))
    moved.wcs.set()
    return moved


def _cached(
    context: Context, observation_id: int, name: str, draw: Callable[[], tuple[bytes, bool]]
) -> bytes:
    """A stored picture, or draw it; ``draw`` says whether to keep what it drew.

    Written atomically: concurrent requests draw the same bytes and one of them stays.
    """
    path = context.files.product_path(observation_id, name)
    if path.exists():
        return path.read_bytes()
    data, keep = draw()
    if keep:
        write_atomically(path, lambda handle: handle.write(data))
    return data


def _calibration_marks(
    context: Context, references: ReferenceSources, facts: FrameFacts, wcs: WCS | None
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]] | None:
    """Pixel positions of the chosen fit's stars (used, rejected); None when they cannot be had."""
    if wcs is None or facts.calibration_id is None:
        return [], []
    diagnostics = recompute_stars(context, references.for_context(context), facts.observation_id)
    if isinstance(diagnostics, str):
        return None
    chosen = diagnostics.chosen
    if chosen is None:
        return [], []
    stars = chosen.stars
    x, y = wcs.all_world2pix(stars.ra_deg, stars.dec_deg, 0)
    used = [(float(a), float(b)) for a, b, u in zip(x, y, stars.used, strict=True) if u]
    other = [(float(a), float(b)) for a, b, u in zip(x, y, stars.used, strict=True) if not u]
    return used, other


def _position(facts: FrameFacts, candidate: int | None) -> tuple[float, float]:
    if candidate is None:
        if facts.target_xy is None:
            raise NotFoundError(
                f"Observation {facts.observation_id}'s reduction has no target position (its astrometry "
                "was not solved), so there is nothing to cut out around.",
                code="no_target_position",
            )
        return facts.target_xy
    listed = facts.candidates
    if not listed:
        raise InputError(
            f"candidate={candidate}: observation {facts.observation_id} has no candidates "
            "(see /candidates); leave candidate out for a cutout around the target.",
            code="candidate_out_of_range",
        )
    if candidate >= len(listed):
        raise InputError(
            f"candidate={candidate} is out of range: observation {facts.observation_id} has "
            f"{len(listed)} candidate(s) (indices 0 to {len(listed) - 1}, as /candidates lists them).",
            code="candidate_out_of_range",
        )
    return float(listed[candidate]["x"]), float(listed[candidate]["y"])


def _aligned_template_cutout(
    context: Context, facts: FrameFacts, x: float, y: float, size: int
) -> NDArray[np.float64]:
    science_wcs = facts.science_wcs()
    template_wcs = _wcs(facts.template_wcs_header)
    if facts.template_sha256 is None or template_wcs is None or science_wcs is None:
        raise NotFoundError(
            f"Observation {facts.observation_id}'s template is no longer stored (it was deleted).",
            code="template_gone",
        )
    template = read_pixels(context, facts.template_sha256)
    x0 = int(np.floor(x + 0.5)) - size // 2
    y0 = int(np.floor(y + 0.5)) - size // 2
    grid = shifted_wcs(science_wcs, x0, y0)
    # Only the part of the template under the cutout (and a margin for the spline) is resampled.
    edge = np.array([-0.5, size - 0.5])
    cx, cy = np.meshgrid(edge, edge)
    sky = grid.pixel_to_world(cx.ravel(), cy.ravel())
    tx, ty = template_wcs.world_to_pixel(sky)
    ny, nx = template.shape
    tx0, ty0 = (
        max(int(np.floor(np.min(tx))) - TEMPLATE_MARGIN_PX, 0),
        max(int(np.floor(np.min(ty))) - TEMPLATE_MARGIN_PX, 0),
    )
    tx1, ty1 = (
        min(int(np.ceil(np.max(tx))) + TEMPLATE_MARGIN_PX, nx),
        min(int(np.ceil(np.max(ty))) + TEMPLATE_MARGIN_PX, ny),
    )
    if tx1 <= tx0 or ty1 <= ty0:
        return np.full((size, size), np.nan)  # the template does not reach this part of the frame
    part = template[ty0:ty1, tx0:tx1]
    aligned = align_template(
        part,
        shifted_wcs(template_wcs, tx0, ty0),
        grid,
        (size, size),
        template_noise=np.zeros(part.shape, dtype=np.float32),
    )
    return np.asarray(aligned.data, dtype=np.float64)


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1/observations", tags=["observations"], responses=ERROR_RESPONSES)
    references = ReferenceSources()

    @api.get(
        "/{observation_id}/thumbnail.png",
        summary="The frame as a PNG, at most `size` px a side: target, calibration stars, candidates marked",
        response_class=Response,
        responses=PNG_RESPONSE,
    )
    def thumbnail(
        context: ContextDep,
        session: SessionDep,
        observation_id: RecordId,
        user: UserDep,
        size: Annotated[int, Query(ge=MIN_THUMBNAIL_PX, le=MAX_THUMBNAIL_PX)] = MAX_THUMBNAIL_PX,
    ) -> Response:
        del user
        facts = frame_facts(session, observation_id)

        def draw() -> tuple[bytes, bool]:
            stars = _calibration_marks(context, references, facts, facts.science_wcs())
            used, other = stars if stars is not None else ([], [])
            accepted = [(float(c["x"]), float(c["y"])) for c in facts.candidates if c.get("accepted")]
            marks = Marks(facts.target_xy, used, other, accepted)
            picture = thumbnail_png(read_pixels(context, facts.sha256), marks, max_px=size)
            # Stars that cannot be recomputed now (catalog-cache away) are drawn next time: not kept.
            return picture, stars is not None

        name = f"view-thumbnail-{facts.cache_key('thumbnail', facts.calibration_id, size)}.png"
        body = _cached(context, observation_id, name, draw)
        return Response(body, media_type=PNG, headers={"Cache-Control": "private, max-age=300"})

    @api.get(
        "/{observation_id}/cutout.png",
        summary="A cutout (science, aligned template or difference) around the target or a candidate, PNG",
        response_class=Response,
        responses=PNG_RESPONSE,
    )
    def cutout_image(
        context: ContextDep,
        session: SessionDep,
        observation_id: RecordId,
        user: UserDep,
        image: CutoutImage = "science",
        candidate: Annotated[int | None, Query(ge=0, le=10_000)] = None,
        size: Annotated[int, Query(ge=MIN_CUTOUT_PX, le=MAX_CUTOUT_PX)] = DEFAULT_CUTOUT_PX,
    ) -> Response:
        del user
        facts = frame_facts(session, observation_id)
        difference_path = (
            subtraction_store.difference_product_path(session, observation_id, "difference")
            if image != "science"
            else None
        )
        x, y = _position(facts, candidate)

        def draw() -> tuple[bytes, bool]:
            if image == "science":
                return cutout_png(cutout(read_pixels(context, facts.sha256), x, y, size)), True
            if image == "template":
                return cutout_png(_aligned_template_cutout(context, facts, x, y, size)), True
            assert difference_path is not None
            with fits.open(context.settings.data_dir / difference_path, memmap=True) as hdus:
                pixels = cutout(np.asarray(hdus[0].data), x, y, size)
            return cutout_png(pixels, difference=True), True

        around = "target" if candidate is None else f"candidate{candidate}"
        name = f"view-{image}-{around}-{facts.cache_key(image, around, size)}.png"
        body = _cached(context, observation_id, name, draw)
        return Response(body, media_type=PNG, headers={"Cache-Control": "private, max-age=300"})

    return api


#: The candidate fields the page shows in their own columns; any other field is shown after them.
CANDIDATE_COLUMNS = frozenset(
    [
        "x",
        "y",
        "ra_deg",
        "dec_deg",
        "flux",
        "flux_err",
        "snr",
        "mag_inst",
        "magerr_inst",
        "mag",
        "size_px",
        "axis_ratio",
        "negative_fraction",
        "reasons",
        "accepted",
    ]
)


@dataclass(frozen=True)
class PageImages:
    """What the observation page shows of an image: whether cutouts exist and the candidate list."""

    has_target: bool
    subtracted: bool
    #: Why there is no template or difference cutout (None when there is).
    note: str | None
    candidates: list[dict[str, Any]]
    #: Candidate fields beyond the usual columns (a classifier's score...), in the order first seen.
    extra_fields: list[str]


def page_images(session: Session, observation_id: int) -> PageImages | None:
    """The observation page's image section; None for a catalogue or an image not reduced yet."""
    try:
        facts = frame_facts(session, observation_id)
        listed = subtraction_store.list_candidates(session, observation_id)
    except NotFoundError:
        return None
    status = facts.subtraction.get("status")
    reason = facts.subtraction.get("reason")
    no_template = (
        "No template cutout or difference: the alert had no template for this instrument and band "
        "when the frame was reduced (an observer can upload one for the alert)."
    )
    if facts.subtraction.get("note"):
        no_template += f" {facts.subtraction['note']}"
    notes = {
        None: no_template,
        "no_template": no_template,
        "failed": f"No difference: the subtraction failed ({reason or 'no reason kept'}).",
        "skipped": f"No difference: {reason or 'the subtraction was skipped'}.",
    }
    candidates = [c.model_dump() for c in listed.candidates]
    extra: list[str] = []
    for row in candidates:
        extra.extend(key for key in row if key not in CANDIDATE_COLUMNS and key not in extra)
    return PageImages(
        has_target=facts.target_xy is not None,
        subtracted=status == "subtracted",
        note=None if status == "subtracted" else notes.get(status, f"No difference ({status})."),
        candidates=candidates,
        extra_fields=extra,
    )
