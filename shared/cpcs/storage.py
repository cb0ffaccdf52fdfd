"""Content-addressed file store for raw uploads and derived products, under the data folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cpcs.errors import InputError

CHUNK_BYTES = 1 << 20


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temporary sibling moved into place: a reader sees the old file or the
    whole new one, never half (``write`` gets the open binary file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class StagedFile:
    """An upload copied to the store's staging area, not yet kept."""

    sha256: str
    size_bytes: int
    path: Path


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
            write_atomically(path, lambda handle: handle.write(data))
        return sha256, path

    def stage(self, source: BinaryIO, *, max_bytes: int) -> StagedFile:
        """Copy a stream into staging in chunks, hashing it on the way; never holds it whole in memory.

        Raises ``OverflowError`` (and keeps nothing) past ``max_bytes``.
        """
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=staging, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := source.read(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise OverflowError(f"more than {max_bytes} bytes")
                    digest.update(chunk)
                    handle.write(chunk)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StagedFile(digest.hexdigest(), size, Path(tmp))

    @contextmanager
    def staged_upload(self, source: BinaryIO, *, max_bytes: int) -> Iterator[StagedFile]:
        """An uploaded file staged for checking, for the ``with`` block: kept only if the block calls
        :meth:`keep`, discarded if it raises. Too large (413) or empty files are refused here."""
        try:
            staged = self.stage(source, max_bytes=max_bytes)
        except OverflowError:
            raise InputError(
                f"The file is larger than the {max_bytes} byte limit.", code="file_too_large", http_status=413
            ) from None
        try:
            if staged.size_bytes == 0:
                raise InputError("The uploaded file is empty.", code="empty_file")
            yield staged
        except BaseException:
            self.discard(staged)
            raise

    def keep(self, staged: StagedFile) -> Path:
        """Move a staged file to its content address (dropping it if identical bytes are stored)."""
        path = self.path_for(staged.sha256)
        if path.exists():
            staged.path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged.path, path)
        return path

    @staticmethod
    def discard(staged: StagedFile) -> None:
        staged.path.unlink(missing_ok=True)

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def product_path(self, observation_id: int, name: str) -> Path:
        """Where a derived product of an observation lives (``products/<id>/<name>``)."""
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError("a product name is a plain file name")
        folder = self.root.parent / "products" / str(int(observation_id))
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def copy_to(self, sha256: str, target: BinaryIO) -> None:
        with self.path_for(sha256).open("rb") as handle:
            shutil.copyfileobj(handle, target, CHUNK_BYTES)

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))
