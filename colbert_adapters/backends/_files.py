"""Files of the persistent backends: atomic writes, directory fsync, the OS-level write lock, a reader/writer lock.

Private module: the public behaviour is documented on the backends (``VoyagerBackend``, ``MemoryBackend.save``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import IndexCorruptedError, IndexLockedError

__all__ = [
    "MANIFEST_CRC_KEY",
    "FileWriteLock",
    "RWLock",
    "check_manifest_crc",
    "file_crc32",
    "fsync_dir",
    "is_temp",
    "with_manifest_crc",
    "write_atomic",
]

#: The key of a JSON manifest's own CRC-32 (over its other keys, canonically serialised).
MANIFEST_CRC_KEY = "manifest_crc32"


def file_crc32(path: Path) -> int:
    """The CRC-32 of a file, read in 4 MiB chunks."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _manifest_crc(data: dict[str, Any]) -> int:
    body = {k: v for k, v in data.items() if k != MANIFEST_CRC_KEY}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return zlib.crc32(text.encode("utf-8"))


def with_manifest_crc(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its CRC-32 under :data:`MANIFEST_CRC_KEY` (what :func:`check_manifest_crc` verifies)."""
    return {**{k: v for k, v in data.items() if k != MANIFEST_CRC_KEY}, MANIFEST_CRC_KEY: _manifest_crc(data)}


def check_manifest_crc(data: dict[str, Any], where: object) -> dict[str, Any]:
    """Return ``data`` (a parsed JSON manifest) if its recorded CRC-32 matches, or it records none (written before
    manifests carried one).

    Raises:
        IndexCorruptedError: the manifest was changed or damaged since it was written.
    """
    recorded = data.get(MANIFEST_CRC_KEY)
    if recorded is not None and recorded != _manifest_crc(data):
        raise IndexCorruptedError(
            f"{where} does not match its checksum: it was damaged or edited since it was written. Restore it (or "
            "the whole index) from a backup"
        )
    return data


class RWLock:
    """Many readers or one writer, writer-preferring (a waiting writer blocks new readers).

    Not re-entrant: a thread holding the read side must not ask for the write side.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """Hold the shared side for the duration of the ``with`` block."""
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """Hold the exclusive side for the duration of the ``with`` block."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class FileWriteLock:
    """An exclusive, non-blocking ``flock`` on ``path``, held until :meth:`release`.

    ``flock`` locks belong to the open file description, so a second :class:`FileWriteLock` on the same file
    fails even inside the same process, and the kernel drops the lock when the process dies (kill -9
    included): a crashed writer never leaves a stale lock behind.

    Args:
        path: the lock file (created if missing; its content is irrelevant).
        what: how to name the locked resource in the error message.

    Raises:
        IndexLockedError: another open handle (another process, or another backend in this one) holds it.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._file: IO[bytes] | None = open(path, "a+b")  # noqa: SIM115 - held for the lock's lifetime
        try:
            _lock_exclusive_nb(self._file)
        except OSError as err:
            self._file.close()
            self._file = None
            raise IndexLockedError(
                f"{what} is locked by another writer (lock file {path}); only one process may open it for "
                "writing at a time. Close the other writer, or open this one with read_only=True"
            ) from err

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                _unlock(self._file)
            self._file.close()
            self._file = None


if sys.platform != "win32":
    import fcntl

    def _lock_exclusive_nb(f: IO[bytes]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(f: IO[bytes]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)

else:  # pragma: no cover - Windows
    import msvcrt

    def _lock_exclusive_nb(f: IO[bytes]) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(f: IO[bytes]) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)


def write_atomic(path: Path, write: Any) -> None:
    """Write ``path`` through ``write(file)`` on a temporary sibling, fsync it, then ``os.replace`` it into place.

    A reader (or a crash) sees the old file or the new one, never a partial one. The temporary name is
    ``.<name>.<uuid>.tmp`` (see :func:`is_temp`), so a crash leaves a recognisable stray.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def fsync_dir(path: Path) -> None:
    """fsync directory ``path`` so that renames and creations in it are durable (a no-op outside POSIX)."""
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_temp(name: str) -> bool:
    """Whether ``name`` is a temporary file of an interrupted atomic write (``.<name>.<uuid>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")
