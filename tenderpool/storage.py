"""Where uploaded files live: one small interface, a local-folder implementation.

Files are stored under random keys (``secrets.token_hex``), never under the name the user
gave, in a folder outside the web root; only the database row knows the original name.
Everything that talks to the disk goes through :class:`Storage`, so that a shared volume or an
object store can replace :class:`LocalStorage` when the service runs on several machines.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from tenderpool.config import ConfigError, Settings
from tenderpool.errors import DomainError, NotFound
from tenderpool.resources import STATIC_DIR

# The app refuses any request bigger than this (MAX_CONTENT_LENGTH in tenderpool.app): a larger
# upload limit could never be reached, so it would only mislead whoever set it.
REQUEST_LIMIT_BYTES = 32 * 1024 * 1024
_KEY_RE = re.compile(r"^[0-9a-f]{32}$")


class StorageError(DomainError):
    """The file could not be written or read; nothing was kept. The message is shown as is."""

    status_code = 503


class Storage(Protocol):
    def save(self, data: bytes) -> str:
        """Store ``data`` under a new random key and return the key."""
        ...

    def open(self, key: str) -> bytes:
        """The bytes stored under ``key`` (NotFound if there are none)."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key``; deleting a missing key is not an error."""
        ...


@dataclass(frozen=True)
class UploadSettings:
    max_bytes: int
    root: Path


def upload_settings(settings: Settings) -> UploadSettings:
    """The validated ``[uploads]`` table; ConfigError names the bad setting."""
    table = settings.raw.get("uploads") or {}
    max_bytes = table.get("max_bytes", 10 * 1024 * 1024)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise ConfigError(f"uploads.max_bytes must be a whole number of bytes (got {max_bytes!r})")
    if not 1024 <= max_bytes <= REQUEST_LIMIT_BYTES:
        raise ConfigError(
            f"uploads.max_bytes must be between 1024 and {REQUEST_LIMIT_BYTES} "
            f"(the app's request size limit), got {max_bytes}"
        )
    raw_path = table.get("path", "")
    if not isinstance(raw_path, str):
        raise ConfigError("uploads.path must be a folder path (a string); empty means <instance>/uploads")
    root = Path(raw_path).expanduser() if raw_path.strip() else settings.instance_path / "uploads"
    root = root.resolve()
    # Files under the static folder would be served to anyone who guesses a key.
    if root == STATIC_DIR or STATIC_DIR in root.parents:
        raise ConfigError(f"uploads.path must not be inside the static folder {STATIC_DIR}")
    return UploadSettings(max_bytes=max_bytes, root=root)


class LocalStorage:
    """Files in one folder, written atomically: a temporary file, fsync, then rename.

    A crash or a full disk in the middle of a write leaves at most a temporary file, which is
    removed on the spot; a key either names a whole file or nothing.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        # Keys are ours (token_hex); anything else is refused before touching the disk, so that
        # a key read from a tampered row can never point outside the folder.
        if not _KEY_RE.match(key):
            raise NotFound("Fichier introuvable.")
        return self.root / key

    def save(self, data: bytes) -> str:
        key = secrets.token_hex(16)
        target = self._path(key)
        tmp_name: str | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".upload-", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                self._write(fh, data)
            os.replace(tmp_name, target)
            tmp_name = None
            self._sync_folder()
        except OSError as exc:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
            raise StorageError(_write_failure_message(exc)) from exc
        return key

    def _write(self, fh: BinaryIO, data: bytes) -> None:
        """Where the bytes reach the disk (and where a full disk shows up, as OSError ENOSPC)."""
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())

    def _sync_folder(self) -> None:
        # The rename is durable only once the folder entry is on disk (POSIX); Windows has no
        # directory handles, where the rename is already as durable as it gets.
        if os.name != "posix":
            return
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def open(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound("Ce fichier n'est plus disponible.") from None
        except OSError as exc:
            raise StorageError(
                "Le fichier ne peut pas être lu pour le moment. Réessayez plus tard ; "
                "si le problème persiste, prévenez votre CCI."
            ) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError("Le fichier n'a pas pu être supprimé. Réessayez plus tard.") from exc


def _write_failure_message(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            "Le fichier n'a pas pu être enregistré : l'espace de stockage du service est plein. "
            "Rien n'a été conservé ; réessayez plus tard ou prévenez votre CCI."
        )
    return (
        "Le fichier n'a pas pu être enregistré (erreur d'écriture sur le serveur). "
        "Rien n'a été conservé ; réessayez plus tard ou prévenez votre CCI."
    )
