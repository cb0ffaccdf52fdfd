"""The HTTP door's defences, in one place. ``cpcs.web.make_app`` installs them on every service.

What is enforced where (defaults from ``cpcs.settings``):

========================  =====================================================================
failed tokens             ``AuthThrottle``, consulted by ``cpcs.domain.accounts.authenticate``
                          for the client of the request (``CallerMiddleware`` names it), so the
                          Bearer header, ``?hashtag=`` and the legacy ``hashtag`` form field all
                          count: past 10 failures of one address with one token, that token gets
                          429 + Retry-After without asking the database; past 30 failures of one
                          address in 60 s, its wrong tokens get 429 instead of 401. A valid token
                          is never refused.
client address            The peer of the connection, or the client its X-Forwarded-For names
                          when the peer is one of ``trusted_proxies`` (addresses or CIDR networks;
                          none by default): uvicorn's proxy headers are switched on only then
                          (``cpcs_system.launcher.http_server_options``), so nobody else can rotate
                          X-Forwarded-For to escape the counters.
body size                 ``BodyLimitMiddleware``: Content-Length checked before the app runs, then
                          the bytes counted as they arrive; 413 JSON as soon as the limit passes.
                          Upload routes (those with a file field): ``max_upload_bytes`` +
                          ``max_form_overhead_bytes`` (400 MiB + 256 KiB); others
                          ``max_request_bytes`` (1 MiB). The file store's own check
                          (``FileStore.stage``) stays as the exact limit of the file itself.
form fields               ``upload_form_limits`` on the upload routes (FastAPI form limits).
catalogue content         ``cpcs.formats._upload_limits`` while the staged file streams in: rows,
                          line length (64 KiB), values (5 M), columns (2000), inflated size
                          (200 MB), FITS table rows from each header; images:
                          ``cpcs.formats.fits_image`` (pixels, header blocks, inflated size).
links                     ``status_url``, ``Location`` and every link CPCS writes start with
                          ``public_url`` (``Settings.public_base_url``), never the Host header;
                          the upload page posts to ``Settings.upload_url``.
time                      ``TimeLimitMiddleware``: ``request_timeout_s`` (60 s); upload routes
                          ``upload_timeout_s`` + ``legacy_wait_s`` (600 + 120 s). 408 if the body
                          is still arriving, else 503 + Retry-After. A handler's thread cannot be
                          stopped: it finishes in the background and its answer is dropped.
slow clients              uvicorn (``cpcs_system.launcher.serve``): request line + headers within
                          ``http_header_timeout_s`` (20 s, ``header_timeout_protocol``) and at most
                          ``http_max_header_bytes`` (16 KiB); idle keep-alive closed after
                          ``http_keep_alive_s`` (5 s).
CORS                      ``CorsMiddleware``: GET/HEAD from any origin (no credentials: tokens are
                          sent explicitly, never as cookies); other methods only from
                          ``cors_origins`` (none by default) and the origin of ``public_url``
                          (our own pages: the upload page on the api posting to ingest when
                          ``ingest_public_url`` names another host or port; the pages' CSP
                          then allows that origin for connect-src and form-action).
headers                   ``SecurityHeadersMiddleware`` on every response, 500s included: nosniff,
                          X-Frame-Options DENY, Referrer-Policy same-origin, a CSP (pages: scripts
                          and styles from us only; JSON: nothing; /docs: its CDN); a 503 always
                          carries Retry-After.
database down             ``cpcs.web`` error handlers: every connection failure (SQLAlchemy's
                          OperationalError, InterfaceError, pool timeouts, psycopg's own, in an
                          exception group or a middleware) is 503 + Retry-After; a 500 never carries
                          a stack trace. The session dependency commits before the answer is sent.
secrets in logs           ``cpcs.logs`` redacts tokens in every formatted log line; the text
                          format escapes control, bidi and zero-width characters, so a value
                          cannot forge a line.
========================  =====================================================================
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import importlib.util
import json
import logging
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cpcs.errors import CpcsError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cpcs.settings import Settings

log = logging.getLogger(__name__)


class FormLimits(TypedDict, total=False):
    """FastAPI's form limits of a route (``form_limits=``)."""

    max_files: int
    max_fields: int
    max_part_size: int


def upload_form_limits(max_files: int) -> FormLimits:
    """Form limits of an upload route: its files, 40 other fields of at most 64 KiB each (file
    fields are bounded by the body limit instead)."""
    return FormLimits(max_files=max_files, max_fields=40, max_part_size=64 * 1024)


# --------------------------------------------------------------------------- failed tokens


class TooManyAttempts(CpcsError):
    """Too many failed token checks from one client: 429 with Retry-After."""

    code = "too_many_failed_tokens"
    http_status = 429

    def __init__(self, retry_after_s: int):
        super().__init__(
            f"Too many failed token checks from your address; retry in {retry_after_s} s. "
            "Check the token you send (the CPCS hashtag)."
        )
        self.retry_after_s = retry_after_s


_KEY_SALT = secrets.token_bytes(16)


def _key(*parts: str) -> bytes:
    """A short keyed digest naming a counter: no token fragment is kept in memory."""
    text = "\0".join(parts).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(text, digest_size=16, key=_KEY_SALT).digest()


class AuthThrottle:
    """Sliding-window counters of failed token checks, per client; a valid token is never refused.

    Two limits. *Per client and token* (keyed by a digest of the whole token): someone retrying
    one wrong or revoked token; past ``per_token`` failures that token gets 429 before the
    database is asked, which cannot refuse a valid token since this one was proven wrong.
    *Per client*: someone trying many tokens; past ``per_client`` failures, a token that turns out
    wrong is answered 429 + Retry-After instead of 401 (and one warning is logged), while a token
    that turns out valid is answered as usual. Guessing a token (256 random bits) is hopeless
    either way; the limits tell a misconfigured or hostile client to back off and keep repeats off
    the database, without letting one client lock out another user's token behind a shared
    address (a gateway, a campus NAT). A success forgets that token's failures.
    """

    def __init__(
        self,
        *,
        window_s: float = 60.0,
        per_token: int = 10,
        per_client: int = 30,
        max_tracked: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.window_s = window_s
        self.per_token = per_token
        self.per_client = per_client
        self.max_tracked = max_tracked
        self.clock = clock
        self._failures: dict[bytes, deque[float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthThrottle:
        return cls(
            window_s=settings.auth_failure_window_s,
            per_token=settings.auth_failures_per_token,
            per_client=settings.auth_failures_per_client,
        )

    @property
    def enabled(self) -> bool:
        return self.window_s > 0 and (self.per_token > 0 or self.per_client > 0)

    @staticmethod
    def _keys(client: str, token: str) -> tuple[bytes, bytes]:
        return _key("token", client, token.strip()), _key("client", client)

    def _wait_s(self, key: bytes, limit: int, now: float) -> float:
        """Seconds until ``key`` has fewer than ``limit`` failures in the window (0: not blocked)."""
        failures = self._failures.get(key)
        if limit <= 0 or not failures:
            return 0.0
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if len(failures) < limit:
            return 0.0
        return failures[len(failures) - limit] + self.window_s - now

    def check(self, client: str, token: str) -> None:
        """Raise ``TooManyAttempts`` if this client has failed with this very token too often."""
        if not self.enabled:
            return
        token_key, _ = self._keys(client, token)
        with self._lock:
            wait = self._wait_s(token_key, self.per_token, self.clock())
        if wait > 0:
            raise TooManyAttempts(max(1, math.ceil(wait)))

    def failed(self, client: str, token: str) -> None:
        """Count a wrong token; raise ``TooManyAttempts`` if the client is past its limit."""
        if not self.enabled:
            return
        now = self.clock()
        token_key, client_key = self._keys(client, token)
        with self._lock:
            for key in (token_key, client_key):
                self._failures.setdefault(key, deque()).append(now)
            # The first per_client failures in the window get 401, those beyond 429.
            wait = self._wait_s(client_key, self.per_client + 1, now) if self.per_client > 0 else 0.0
            if wait and len(self._failures[client_key]) == self.per_client + 1:
                log.warning("failed token checks from %s: further failures get 429 for a while", client)
            if len(self._failures) > self.max_tracked:
                self._forget(now)
        if wait > 0:
            raise TooManyAttempts(max(1, math.ceil(wait)))

    def succeeded(self, client: str, token: str) -> None:
        if not self.enabled:
            return
        token_key, _ = self._keys(client, token)
        with self._lock:
            self._failures.pop(token_key, None)

    def _forget(self, now: float) -> None:
        """Bound the memory: drop what left the window, then the oldest entries."""
        horizon = now - self.window_s
        for key in [k for k, q in self._failures.items() if not q or q[-1] <= horizon]:
            del self._failures[key]
        excess = len(self._failures) - int(0.9 * self.max_tracked)
        for key in list(self._failures)[: max(0, excess)]:
            del self._failures[key]


@dataclass(frozen=True)
class _Caller:
    throttle: AuthThrottle
    client: str


_caller: ContextVar[_Caller | None] = ContextVar("cpcs_http_caller", default=None)


@contextmanager
def http_caller(throttle: AuthThrottle, client: str) -> Iterator[None]:
    """Token checks in this context count against ``client`` (copied into worker threads too)."""
    reset = _caller.set(_Caller(throttle, client))
    try:
        yield
    finally:
        _caller.reset(reset)


def before_token_check(token: str) -> None:
    """Refuse (429) a token check the caller's throttle says must wait; nothing outside HTTP."""
    caller = _caller.get()
    if caller is not None:
        caller.throttle.check(caller.client, token)


def token_checked(token: str, *, ok: bool) -> None:
    caller = _caller.get()
    if caller is not None:
        (caller.throttle.succeeded if ok else caller.throttle.failed)(caller.client, token)


def client_host(scope: Scope) -> str:
    """The client's address (uvicorn puts the X-Forwarded-For client there for trusted proxies)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class CallerMiddleware:
    """Names the client for the token checks made while handling a request."""

    def __init__(self, app: ASGIApp, throttle: AuthThrottle):
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with http_caller(self.throttle, client_host(scope)):
            await self.app(scope, receive, send)


# --------------------------------------------------------------------------- responses


async def send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """A JSON error body (``{"error", "message"}``) sent straight on the ASGI channel."""
    body = json.dumps({"error": code, "message": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- body size


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` past the limit; FastAPI passes HTTP exceptions from the body through."""

    code = "request_too_large"

    def __init__(self, limit: int):
        super().__init__(413, f"The request body is larger than this endpoint's limit of {limit} bytes.")
        self.limit = limit


def content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


#: Told of every refusal a limit makes before the app answers: (scope, error code).
RefusalHook = Callable[[Scope, str], None]


def _no_hook(scope: Scope, code: str) -> None:
    del scope, code


class BodyLimitMiddleware:
    """Answers 413 before a body over ``limit_for(scope)`` is read, or as soon as it passes the limit."""

    def __init__(
        self, app: ASGIApp, limit_for: Callable[[Scope], int | None], on_refusal: RefusalHook = _no_hook
    ):
        self.app = app
        self.limit_for = limit_for
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared is not None and declared > limit:
            await self._too_large(scope, send, limit)
            return
        received = 0
        exceeded = started = replaced = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def checked_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                if exceeded and message["status"] != 413:
                    # The app turned the interrupted body into another error: it was this one.
                    replaced = True
                    await self._too_large(scope, send, limit)
                    return
            if not replaced:
                await send(message)

        try:
            await self.app(scope, counting_receive, checked_send)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(scope, send, limit)

    async def _too_large(self, scope: Scope, send: Send, limit: int) -> None:
        self.on_refusal(scope, "request_too_large")
        await send_error(
            send,
            413,
            "request_too_large",
            f"The request body is larger than this endpoint's limit of {limit} bytes.",
            {"Connection": "close"},
        )


# --------------------------------------------------------------------------- time


class TimeLimitMiddleware:
    """Answers within ``limit_for(scope)`` seconds: 408 while the body is still arriving, else 503.

    The app runs as its own task; on time-out the client is answered at once and the task is
    cancelled. Code in a worker thread cannot be interrupted: it runs to its end and whatever it
    sends then is dropped.
    """

    def __init__(
        self, app: ASGIApp, limit_for: Callable[[Scope], float | None], on_refusal: RefusalHook = _no_hook
    ):
        self.app = app
        self.limit_for = limit_for
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope) if scope["type"] == "http" else None
        if not limit:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        body_done = content_length(scope) == 0 or (
            "content-length" not in headers and "transfer-encoding" not in headers
        )
        started = abandoned = False

        async def watched_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if abandoned:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, watched_receive, guarded_send))
        try:
            done, _ = await asyncio.wait({task}, timeout=limit)
        except BaseException:
            task.cancel()
            raise
        if task in done:
            task.result()
            return
        abandoned = True
        task.cancel()
        task.add_done_callback(_consume)
        path = scope.get("path", "")
        log.warning("request time limit (%.0f s) reached: %s %s", limit, scope.get("method"), path)
        if started:
            return  # the answer is under way and cannot change; uvicorn closes the connection
        self.on_refusal(scope, "request_timeout")
        if not body_done:
            await send_error(
                send,
                408,
                "request_timeout",
                f"The request body did not arrive within {limit:.0f} s.",
                {"Connection": "close"},
            )
        else:
            await send_error(
                send,
                503,
                "request_timeout",
                f"The request took longer than {limit:.0f} s; retry later.",
                {"Retry-After": "30"},
            )


def _consume(task: asyncio.Future[Any]) -> None:
    """Read the abandoned task's outcome so it is not reported as never retrieved."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("an abandoned request ended with %s", type(error).__name__)


# --------------------------------------------------------------------------- CORS and headers

READ_METHODS = ("GET", "HEAD")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = "Authorization, Content-Type"
EXPOSED_HEADERS = "Location, Retry-After, Content-Disposition"


class CorsMiddleware:
    """Cross-origin reads from anywhere; cross-origin writes only from ``write_origins``.

    No ``Access-Control-Allow-Credentials``: CPCS authenticates with an explicit token, never a
    cookie, so a page elsewhere can only use a token it was given.
    """

    def __init__(self, app: ASGIApp, write_origins: Iterable[str] = ()):
        self.app = app
        self.write_origins = frozenset(write_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        requested = headers.get("access-control-request-method")
        if method == "OPTIONS" and requested is not None:
            await self._preflight(send, origin, requested.upper())
            return
        allowed = self._allow_origin(origin, method)

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out.add_vary_header("Origin")
                if allowed is not None:
                    out["Access-Control-Allow-Origin"] = allowed
                    out["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            await send(message)

        await self.app(scope, receive, with_cors)

    def _allow_origin(self, origin: str, method: str) -> str | None:
        if origin.rstrip("/") in self.write_origins:
            return origin
        return "*" if method in READ_METHODS else None

    async def _preflight(self, send: Send, origin: str, requested: str) -> None:
        allowed = self._allow_origin(origin, requested)
        if allowed is None:
            await send_error(
                send,
                403,
                "cors_origin_not_allowed",
                f"Cross-origin {requested} is not allowed from {origin[:200]}; reads (GET) are.",
                {"Vary": "Origin"},
            )
            return
        methods = [*READ_METHODS, *(WRITE_METHODS if allowed != "*" else ())]
        raw = {
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Allow-Methods": ", ".join(methods),
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(k.lower().encode(), v.encode()) for k, v in raw.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})


#: CSP source of an empty stylesheet or style attribute (the SHA-256 of nothing).
EMPTY_STYLE_HASH = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
_BUNDLED_STYLE = re.compile(r"""createElement\("style"\)[^']{0,300}?\.textContent='([^'\\]*)'""")


#: The style attributes plotly.js gives its rich-text tags (<b>, <i>, <sup>...) in labels.
PLOTLY_TEXT_STYLES = (
    "font-size:70%",
    "text-decoration:line-through",
    "text-decoration:underline",
    "font-weight:bold",
    "font-style:italic",
    "cursor:pointer",
    "font-style:italic;font-weight:bold",
)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.lru_cache(maxsize=1)
def bundled_style_hashes() -> tuple[str, ...]:
    """CSP sources for the styles the pages' plotting library writes into the page itself.

    plotly.js creates an empty ``<style>`` element and fills it through the CSSOM (which CSP does
    not govern), sets empty ``style`` attributes and fixed ones for its rich-text tags (``<b>`` in
    a hover label), and injects one fixed stylesheet (maplibre's, read from the served bundle so
    that its hash follows the version). Allowing exactly these by hash keeps ``style-src`` to our
    own files plus fixed strings of the library: a style taken from data (a ``<span style>`` in a
    name) stays blocked.
    """
    hashes = [EMPTY_STYLE_HASH, *(_csp_hash(style) for style in PLOTLY_TEXT_STYLES)]
    spec = importlib.util.find_spec("plotly")
    if spec is not None and spec.submodule_search_locations:
        bundle = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
        if bundle.is_file():
            for match in _BUNDLED_STYLE.finditer(bundle.read_text("utf-8", errors="replace")):
                hashes.append(_csp_hash(match.group(1)))
    return tuple(dict.fromkeys(hashes))


def page_policy(upload_origins: Iterable[str] = ()) -> str:
    """The web pages: scripts and styles only from us (their data sits in non-executing JSON blocks).

    ``upload_origins``: where else the upload page may send its form (ingest on its own host or port).
    """
    writes = " ".join(("'self'", *upload_origins))
    return (
        "default-src 'self'; script-src 'self'; "
        f"style-src 'self' 'unsafe-hashes' {' '.join(bundled_style_hashes())}; img-src 'self' data: blob:; "
        f"font-src 'self'; connect-src {writes}; object-src 'none'; base-uri 'none'; form-action {writes}; "
        "frame-ancestors 'none'"
    )


#: FastAPI's /docs and /redoc load their bundle from jsDelivr and start it with an inline script.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; worker-src blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
#: Anything else (JSON, files): nothing to load, nothing to frame.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeadersMiddleware:
    """Security headers on every response; a 503 without Retry-After gets one."""

    def __init__(
        self,
        app: ASGIApp,
        docs_paths: Iterable[str] = (),
        retry_after_s: int = 5,
        upload_origins: Iterable[str] = (),
    ):
        self.app = app
        self.docs_paths = frozenset(docs_paths)
        self.retry_after = str(retry_after_s)
        self.page_policy = page_policy(upload_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path") in self.docs_paths

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    out.setdefault(name, value)
                if "content-security-policy" not in out:
                    html = out.get("content-type", "").startswith("text/html")
                    out["Content-Security-Policy"] = (
                        (DOCS_POLICY if docs else self.page_policy) if html else DATA_POLICY
                    )
                if message["status"] == 503:
                    out.setdefault("Retry-After", self.retry_after)
            await send(message)

        await self.app(scope, receive, with_headers)


# --------------------------------------------------------------------------- the door of an app


@dataclass
class Door:
    """The limits of one app: which routes are uploads, and the numbers from the settings."""

    settings: Settings
    throttle: AuthThrottle
    #: The path of each route taking a file, with the door its uploads are counted under (if any).
    upload_paths: tuple[tuple[re.Pattern[str], str | None], ...] = ()

    @classmethod
    def for_app(cls, app: FastAPI, settings: Settings) -> Door:
        return cls(settings, AuthThrottle.from_settings(settings), upload_route_patterns(app.routes))

    def _upload_door(self, scope: Scope) -> tuple[bool, str | None]:
        """Whether the request is an upload, and the door it counts under."""
        path = scope.get("path", "")
        if scope.get("method") == "POST":
            for pattern, door in self.upload_paths:
                if pattern.match(path):
                    return True, door
        return False, None

    def is_upload(self, scope: Scope) -> bool:
        return self._upload_door(scope)[0]

    def count_refusal(self, scope: Scope, code: str) -> None:
        """A limit refused an upload before its route ran: count it as the route would have."""
        from cpcs import metrics

        door = self._upload_door(scope)[1]
        if door is not None:
            metrics.upload_refused(door, code)

    def body_limit(self, scope: Scope) -> int | None:
        if self.is_upload(scope):
            return self.settings.max_upload_bytes + self.settings.max_form_overhead_bytes
        return self.settings.max_request_bytes

    def time_limit(self, scope: Scope) -> float | None:
        if self.is_upload(scope):
            upload = self.settings.upload_timeout_s
            return upload + self.settings.legacy_wait_s if upload > 0 else None
        return self.settings.request_timeout_s or None

    def install(self, app: FastAPI) -> None:
        """The inner defences, inside the app's error handling (added last = outermost)."""
        app.add_middleware(BodyLimitMiddleware, limit_for=self.body_limit, on_refusal=self.count_refusal)
        app.add_middleware(TimeLimitMiddleware, limit_for=self.time_limit, on_refusal=self.count_refusal)
        app.add_middleware(CallerMiddleware, throttle=self.throttle)

    def wrap(self, app: ASGIApp, docs_paths: Iterable[str]) -> ASGIApp:
        """The outer ones, around everything (so a 500 gets the headers too)."""
        return SecurityHeadersMiddleware(
            CorsMiddleware(app, self.settings.write_origins),
            docs_paths,
            upload_origins=self.settings.upload_origins,
        )


def upload_route_patterns(routes: Sequence[Any]) -> tuple[tuple[re.Pattern[str], str | None], ...]:
    """The paths of routes taking a file (``File``/``UploadFile`` parameters), included routers too,
    each with the door its uploads are counted under (``cpcs.metrics.upload_door``)."""
    from fastapi import params
    from fastapi.routing import APIRoute, iter_route_contexts
    from starlette.routing import compile_path

    from cpcs.metrics import upload_door

    patterns = []
    for context in iter_route_contexts(routes):
        route = context.original_route
        if (
            isinstance(route, APIRoute)
            and context.path
            and any(isinstance(field.field_info, params.File) for field in route.dependant.body_params)
        ):
            patterns.append((compile_path(context.path)[0], upload_door(route)))
    return tuple(patterns)


# --------------------------------------------------------------------------- slow clients


def header_timeout_protocol(timeout_s: float) -> type[Any]:
    """uvicorn's h11 protocol with a deadline for each request's line and headers.

    uvicorn times out idle keep-alive connections but not one that trickles its headers (its idle
    timer restarts on every byte): this closes a connection that has not completed a request's
    headers ``timeout_s`` after it opened or after its previous response.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _baseline: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._baseline:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._baseline = self.cycle
            self._header_timer = self.loop.call_later(timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            cycle = self.cycle
            idle = cycle is None or (cycle is self._baseline and cycle.response_complete)
            if idle and not self.transport.is_closing():
                log.info("closing a connection that sent no complete request in %.0f s", timeout_s)
                self.transport.close()

    return HeaderTimeoutH11Protocol
