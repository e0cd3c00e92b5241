"""Blocking file primitives: atomic replace and the append-only journal file.

Everything here is synchronous; async callers run it through trio.to_thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so a crash at any point leaves the old file or the
    new one, never a torn file: temp file in the same dir, write, fsync, rename,
    fsync the directory."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def remove_durably(path: Path) -> bool:
    """Unlink `path` and fsync its directory. Returns False if it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


class JournalFile:
    """An append-only file of JSON lines. Each `append` reaches the kernel before it
    returns (so a killed daemon loses nothing appended); `fsync=True` also survives
    power loss, at the cost of a disk flush per batch."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self._fsync = fsync
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size  # the end of the last whole append
        fsync_dir(path.parent)

    def append(self, data: bytes) -> None:
        """Append whole lines, or nothing: a write that fails part way (disk full) is
        cut back off, so later appends never follow half a line."""
        if self._fd is None:
            raise ValueError(f"journal {self.path} is closed")
        try:
            written = os.write(self._fd, data)
            if written < len(data):  # rare: a signal or a full disk part way through
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(self._fd, view) :]
            if self._fsync:
                os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_lines(path: Path) -> tuple[list[bytes], bytes]:
    """Complete lines of a journal, and the torn tail after the last newline (if any)."""
    data = path.read_bytes()
    body, _, tail = data.rpartition(b"\n")
    if not body and not data.startswith(b"\n"):
        return [], tail
    return body.split(b"\n"), tail
