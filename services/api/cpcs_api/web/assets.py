"""The pages' scripts and styles, served by us (no CDN).

Our own files live in ``static/`` beside this module. The plotting library, plotly.js, is not copied
into the repository: the ``plotly`` Python package (a dependency) ships its minified bundle as
``plotly/package_data/plotly.min.js`` and it is served from there. Every asset is read once, compressed
once, and served with a content hash in its URL (``?v=``), an ETag and a long cache lifetime.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request, Response

STATIC_DIR = Path(__file__).with_name("static")
PLOTLY_BUNDLE = "plotly.min.js"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CACHE_CONTROL = "public, max-age=31536000, immutable"
REVALIDATE = "public, max-age=3600"


def plotly_bundle_path() -> Path | None:
    """plotly.min.js inside the installed ``plotly`` package, found without importing it."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / PLOTLY_BUNDLE
    return path if path.is_file() else None


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str

    @property
    def version(self) -> str:
        return self.etag.strip('"')[:12]


class Assets:
    """The files under ``/static/``: a fixed set, known at start, so no path reaches the disk unchecked."""

    def __init__(self, folder: Path = STATIC_DIR, extra: dict[str, Path | None] | None = None):
        self.paths: dict[str, Path] = {
            p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in MEDIA_TYPES
        }
        for name, path in (extra if extra is not None else {PLOTLY_BUNDLE: plotly_bundle_path()}).items():
            if path is not None:
                self.paths[name] = path
        self._loaded: dict[str, Asset] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Asset | None:
        path = self.paths.get(name)
        if path is None:
            return None
        with self._lock:
            asset = self._loaded.get(name)
            if asset is None:
                body = path.read_bytes()
                asset = Asset(
                    body=body,
                    gzipped=gzip.compress(body, compresslevel=6, mtime=0),
                    etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
                    media_type=MEDIA_TYPES[path.suffix],
                )
                self._loaded[name] = asset
        return asset

    def url(self, name: str) -> str:
        """``/static/NAME?v=HASH``; a missing asset keeps its plain URL (and answers 404)."""
        asset = self.get(name)
        return f"/static/{name}?v={asset.version}" if asset is not None else f"/static/{name}"

    def response(self, request: Request, name: str) -> Response:
        asset = self.get(name)
        if asset is None:
            hint = " (the plotly package is not installed)" if name == PLOTLY_BUNDLE else ""
            return Response(f"No static file {name}{hint}.", status_code=404, media_type="text/plain")
        versioned = request.query_params.get("v") == asset.version
        headers = {
            "ETag": asset.etag,
            "Cache-Control": CACHE_CONTROL if versioned else REVALIDATE,
            "Vary": "Accept-Encoding",
        }
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)
