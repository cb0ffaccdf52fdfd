"""REST v1: the templates of an alert (reference images for image subtraction)."""

from __future__ import annotations

from typing import Annotated, BinaryIO

from fastapi import APIRouter, File, Form, UploadFile

from cpcs.context import Context
from cpcs.db.models import Template, User
from cpcs.domain import templates as template_store
from cpcs.domain.alerts import get_alert
from cpcs.domain.instruments import find_instrument, instrument_defaults
from cpcs.domain.recalibration import resubtract_for_template
from cpcs.schemas import RecordId
from cpcs.security import upload_form_limits
from cpcs.web import ERROR_RESPONSES, UPLOAD_RESPONSES, ContextDep, SessionDep, UserDep


def accept_template(
    context: Context,
    user: User,
    alert_id: int,
    stream: BinaryIO,
    filename: str | None,
    filter_name: str,
    instrument_name: str | None,
) -> template_store.TemplateOut:
    """Stage, check and keep a template image; nothing is kept when it is refused."""
    with context.db.transaction() as session:
        alert = get_alert(session, alert_id)
        instrument = find_instrument(session, user.observatory_id, instrument_name)
        defaults = instrument_defaults(instrument)
    settings = context.settings
    with context.files.staged_upload(stream, max_bytes=settings.max_upload_bytes) as staged:
        facts = template_store.inspect_template(
            staged.path,
            alert_ra_deg=alert.ra_deg,
            alert_dec_deg=alert.dec_deg,
            filter_name=filter_name,
            instrument=defaults,
            max_pixels=settings.max_image_pixels,
        )
        stored = context.files.keep(staged)
    with context.db.transaction() as session:
        added = template_store.add_template(
            session,
            user=session.merge(user),
            alert=get_alert(session, alert_id),
            instrument=session.merge(instrument) if instrument is not None else None,
            facts=facts,
            sha256=staged.sha256,
            size_bytes=staged.size_bytes,
            stored_path=context.files.relative(stored),
            filename=(filename or "").replace("\\", "/").rsplit("/", 1)[-1][:300] or None,
        )
        template = session.get(Template, added.id)
        assert template is not None
        # Frames of the alert reduced before this template existed are subtracted with it now.
        queued = resubtract_for_template(session, template, session.merge(user))
    if queued:
        context.committed()
    return added.model_copy(update={"resubtracting": queued})


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1/alerts", tags=["templates"], responses=ERROR_RESPONSES)

    @api.post(
        "/{alert_id}/templates",
        status_code=201,
        response_model=template_store.TemplateOut,
        summary="Upload a template (FITS image with a WCS) of the field for an instrument and filter",
        responses=UPLOAD_RESPONSES,
        form_limits=upload_form_limits(max_files=1),
    )
    def upload_template(
        alert_id: RecordId,
        context: ContextDep,
        user: UserDep,
        file: Annotated[UploadFile, File(description="A FITS image of the field, with its WCS")],
        filter: Annotated[str, Form(max_length=40, description="Filter of the template (V, r, Clear...)")],
        instrument: Annotated[
            str | None,
            Form(max_length=200, description="Your observatory's instrument (default: its only one)"),
        ] = None,
    ) -> template_store.TemplateOut:
        return accept_template(context, user, alert_id, file.file, file.filename, filter, instrument or None)

    @api.get(
        "/{alert_id}/templates",
        response_model=list[template_store.TemplateOut],
        summary="The templates of an alert",
    )
    def list_templates(
        session: SessionDep, alert_id: RecordId, user: UserDep
    ) -> list[template_store.TemplateOut]:
        del user
        get_alert(session, alert_id)
        return template_store.list_templates(session, alert_id)

    @api.delete(
        "/{alert_id}/templates/{template_id}",
        response_model=template_store.TemplateOut,
        summary="Delete one of your templates (admins: any)",
    )
    def delete_template(
        alert_id: RecordId, template_id: RecordId, context: ContextDep, user: UserDep
    ) -> template_store.TemplateOut:
        with context.db.transaction() as session:
            return template_store.delete_template(session, user, alert_id, template_id)

    return api
