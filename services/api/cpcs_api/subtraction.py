"""REST v1: the products of an image's subtraction (difference image, its noise map) and candidates."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from cpcs.domain import subtraction as subtraction_store
from cpcs.schemas import RecordId
from cpcs.web import ERROR_RESPONSES, ContextDep, SessionDep, UserDep


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1/observations", tags=["observations"], responses=ERROR_RESPONSES)

    @api.get(
        "/{observation_id}/difference",
        summary="The difference image (product=difference) or its noise map (product=noise), FITS",
        response_class=Response,
        responses={
            200: {
                "content": {
                    "application/fits": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                }
            }
        },
    )
    def difference(
        context: ContextDep,
        session: SessionDep,
        observation_id: RecordId,
        user: UserDep,
        product: subtraction_store.DifferenceProduct = "difference",
    ) -> Response:
        del user
        path = subtraction_store.difference_product_path(session, observation_id, product)
        return FileResponse(
            context.settings.data_dir / path,
            media_type="application/fits",
            filename=f"cpcs-{observation_id}-{subtraction_store.DIFFERENCE_PRODUCTS[product]}",
        )

    @api.get(
        "/{observation_id}/candidates",
        response_model=subtraction_store.CandidatesOut,
        summary="Sources found on the image's difference image, with their artefact tests",
    )
    def candidates(
        session: SessionDep, observation_id: RecordId, user: UserDep
    ) -> subtraction_store.CandidatesOut:
        del user
        return subtraction_store.list_candidates(session, observation_id)

    return api
