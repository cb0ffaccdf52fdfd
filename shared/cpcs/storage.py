"""Content-addressed file store for raw uploads and derived products, under the data folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class FileStore:
    """Files named by their SHA-256 (``ab/cd/abcd...``); writes are atomic, paths never leave ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> tuple[str, Path]:
        """Store bytes; returns their digest and path (an existing identical file is kept)."""
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path_for(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return sha256, path

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))
