"""Where the bytes of message attachments live: a content-addressed blob store (the local filesystem by default).

A blob's key is the sha256 hex digest of its bytes, so the same file sent twice is stored once, and a blob
written by a request that later fails is harmless: nothing refers to it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core.settings import Settings

_KEY = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """The blob store cannot give back what was asked for."""


class BlobNotFound(BlobError):
    pass


class InvalidBlobKey(BlobError, ValueError):
    pass


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store ``data`` and return its key (idempotent: the same bytes give the same key)."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``; :class:`BlobNotFound` when there are none."""
        ...


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalBlobStore:
    """Blobs as files ``<root>/<first two hex digits>/<sha256>``, written atomically (temporary file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise InvalidBlobKey("a blob key is a lowercase sha256 hex digest")
        return self.root / key[:2] / key

    def put(self, data: bytes) -> str:
        key = digest(data)
        path = self._path(key)
        if path.is_file() and path.stat().st_size == len(data):
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key}") from None


def blob_store(settings: Settings) -> BlobStore:
    """The configured blob store: ``CAREHUB_BLOB_DIR``, or ``<data_dir>/blobs`` when unset."""
    root = settings.blob_dir if settings.blob_dir is not None else Path(settings.data_dir) / "blobs"
    return LocalBlobStore(root)
