"""What every HTTP service shares: error bodies, health and readiness, auth and session dependencies."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from cpcs import metrics
from cpcs.context import Context
from cpcs.db.models import User
from cpcs.domain.accounts import authenticate
from cpcs.errors import CpcsError, PermissionDeniedError
from cpcs.logs import redact
from cpcs.outage import UNAVAILABLE_DRIVER_ERRORS, causes, database_unavailable
from cpcs.schemas import ErrorBody
from cpcs.security import Door, TooManyAttempts
from cpcs.tracing import TracingMiddleware

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token or an invalid one"},
    403: {"model": ErrorBody, "description": "Not allowed for this token"},
    404: {"model": ErrorBody, "description": "Not found"},
    422: {"model": ErrorBody, "description": "The input cannot be used; the message says what to fix"},
    429: {"model": ErrorBody, "description": "Too many failed token checks from here; see Retry-After"},
    500: {"model": ErrorBody, "description": "The server failed; the error was logged"},
    503: {"model": ErrorBody, "description": "A dependency is unavailable; retry after Retry-After seconds"},
}
#: Upload routes also answer these.
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The form cannot be read (too many fields, a field too long)"},
    413: {"model": ErrorBody, "description": "The file or the request is too large"},
}
RETRY_AFTER_S = 5
#: For endpoints that create something unique (an alert's name, a user at an observatory).
CONFLICT_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "It exists already"}
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "message": message}, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "The request is not valid."


def _database_unavailable_response(exc: BaseException) -> JSONResponse:
    cause = next((e for e in causes(exc) if isinstance(e, UNAVAILABLE_DRIVER_ERRORS)), exc)
    log.warning("database unavailable: %s", redact(str(getattr(cause, "orig", None) or cause))[:500])
    return error_response(
        503,
        "database_unavailable",
        "The database is unavailable; retry shortly.",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


def _internal_error_response() -> JSONResponse:
    return error_response(500, "internal_error", "The server failed; the error was logged.")


def install_error_handlers(app: FastAPI) -> None:
    """Every error becomes a JSON body; a 500 never carries a stack trace; no database is a 503."""

    @app.exception_handler(CpcsError)
    async def _domain(_request: Request, exc: CpcsError) -> JSONResponse:
        headers: dict[str, str] | None = None
        if exc.http_status == 503:
            headers = {"Retry-After": str(RETRY_AFTER_S)}
        elif exc.http_status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, TooManyAttempts):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(exc.http_status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "request_too_large",
        }.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 503:
            headers.setdefault("Retry-After", str(RETRY_AFTER_S))
        return error_response(exc.status_code, code, str(exc.detail), headers or None)

    async def _database(_request: Request, exc: Exception) -> JSONResponse:
        if database_unavailable(exc):
            return _database_unavailable_response(exc)
        log.error("database error: %s", type(exc).__name__, exc_info=exc)
        return _internal_error_response()

    # Handled here (not by the catch-all below, which uvicorn then also reports as a crash).
    app.add_exception_handler(sqlalchemy_exc.SQLAlchemyError, _database)
    for driver_error in UNAVAILABLE_DRIVER_ERRORS:
        app.add_exception_handler(driver_error, _database)

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        # Also what is raised outside the handlers' reach: in a middleware, or wrapped in a group.
        if database_unavailable(exc):
            return _database_unavailable_response(exc)
        log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        return _internal_error_response()

    @app.middleware("http")
    async def _timing(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        log.debug(
            "%s %s",
            request.method,
            request.url.path,
            extra={
                "status": response.status_code,
                "duration_ms": round(1e3 * (time.perf_counter() - started), 1),
            },
        )
        return response


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    database: bool
    broker: bool


def health_router(context: Context) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Liveness, summary="Liveness: the process answers")
    def healthz() -> Liveness:
        return Liveness(status="ok")

    @router.get(
        "/readyz",
        response_model=Readiness,
        summary="Readiness: database and broker reachable",
        responses={503: {"model": ErrorBody, "description": "Not ready; the message says what is down"}},
    )
    def readyz() -> Any:
        checks = context.readiness()
        if all(checks.values()):
            return Readiness(status="ready", **checks)
        return error_response(503, "not_ready", f"Not ready: {checks}", {"Retry-After": "5"})

    @router.get(
        "/metrics",
        summary="Prometheus metrics of this process",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "The text exposition format"}},
    )
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return router


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    """A session whose transaction commits when the handler returns without error."""
    with context.db.transaction() as session:
        yield session


# scope="function": the commit happens before the answer is sent, so a failed commit (the
# database gone) is answered 503, never a 2xx for something that was not stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

bearer_scheme = HTTPBearer(auto_error=False, description="Your token (the CPCS hashtag)")


def token_from_request(request: Request, form_hashtag: str | None = None) -> str | None:
    """The caller's token, the one way every endpoint reads it: an ``Authorization: Bearer`` header
    first, then the legacy ``hashtag`` form field (``form_hashtag``), then ``?hashtag=``."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return form_hashtag or request.query_params.get("hashtag")


def current_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> User:
    del credentials  # declared for the OpenAPI document; read with the others below
    return authenticate(session, token_from_request(request))


UserDep = Annotated[User, Depends(current_user)]


def admin_user(user: UserDep) -> User:
    if user.role != "admin":
        raise PermissionDeniedError("This needs an admin token.", code="admin_only")
    return user


AdminDep = Annotated[User, Depends(admin_user)]


def operation_id(route: APIRoute) -> str:
    """An operation's id is its handler's name (``upload``, ``get_observation``): short names in SDKs.

    Handlers of different routers that share a name set ``operation_id`` themselves.
    """
    return route.name


def _binary_file_fields(node: Any) -> None:
    """Mark uploaded files ``format: binary`` too (beside 3.1's ``contentMediaType``): generators
    such as openapi-python-client recognise a file field only by it."""
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("contentMediaType") == "application/octet-stream":
            node.setdefault("format", "binary")
        for value in node.values():
            _binary_file_fields(value)
    elif isinstance(node, list):
        for value in node:
            _binary_file_fields(value)


class CpcsApp(FastAPI):
    """FastAPI with the OpenAPI document's file fields marked for client generators, and the door's
    outer defences (CORS, security headers) around everything, error pages included; around that,
    the request's trace span (when tracing is on)."""

    door: Door | None = None

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            _binary_file_fields(super().openapi())
        assert self.openapi_schema is not None
        return self.openapi_schema

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        if self.door is not None:
            pages = (self.docs_url, self.redoc_url, self.swagger_ui_oauth2_redirect_url)
            app = self.door.wrap(app, [url for url in pages if url])
        return TracingMiddleware(app)  # outermost: what the door refuses has its span too


def make_app(context: Context, *, title: str, routers: list[APIRouter], description: str = "") -> FastAPI:
    """A service's app: its routers, health, error handling and the door (``cpcs.security``)."""
    from cpcs import __version__

    app = CpcsApp(
        title=title, version=__version__, description=description, generate_unique_id_function=operation_id
    )
    app.state.context = context
    install_error_handlers(app)
    app.include_router(health_router(context))
    for router in routers:
        app.include_router(router)
    app.door = Door.for_app(app, context.settings)
    app.door.install(app)
    return app
