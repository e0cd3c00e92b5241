"""Blocking file primitives for the data dir: atomic replace, the append-only journal
file, and reads. Nothing here follows a symbolic link: every file is opened with
O_NOFOLLOW and every directory is checked with lstat, so a link planted in the data
dir can neither redirect a write nor feed us another file's contents.

Everything here is synchronous; async callers run it through trio.to_thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(OSError):
    """A path in the data dir is a link, or not the kind of file we made there."""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> None:
    """Make `path` a directory only we can use (0700), or check that it is one.
    Raises UnsafePathError when it is a symlink or not a directory."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    check_real_dir(path)


def check_real_dir(path: Path) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
        raise UnsafePathError(
            errno.ELOOP, f"{path} is {kind}; the daemon never follows links in its data dir "
            "(remove it and start again)", str(path),
        )  # fmt: skip


def read_file(path: Path) -> bytes:
    """The contents of a regular file, never through a symlink. Raises
    FileNotFoundError, or UnsafePathError for a link or a non-regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _link_error(path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(errno.EINVAL, f"{path} is not a regular file", str(path))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _link_error(path: Path) -> UnsafePathError:
    return UnsafePathError(
        errno.ELOOP,
        f"{path} is a symbolic link; the daemon never follows links in its data dir (remove it)",
        str(path),
    )


def is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so a crash at any point leaves the old file or the
    new one, never a torn file: temp file in the same dir, write, fsync, rename,
    fsync the directory. A symlink at `path` is replaced, never written through."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def remove_durably(path: Path) -> bool:
    """Unlink `path` and fsync its directory. Returns False if it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def free_bytes(directory: Path) -> int | None:
    """Bytes an unprivileged writer may still use in `directory`'s file system."""
    try:
        info = os.statvfs(directory)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


class JournalFile:
    """An append-only file of JSON lines. Each `append` reaches the kernel before it
    returns (so a killed daemon loses nothing appended); `sync()` makes it survive
    power loss too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o644
        )
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise UnsafePathError(errno.EINVAL, f"{path} is not a regular file", str(path))
        self._size = os.fstat(self._fd).st_size  # the end of the last whole append
        fsync_dir(path.parent)

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    @property
    def size(self) -> int:
        """The end of the last whole append."""
        return self._size

    def append(self, data: bytes) -> None:
        """Append whole lines, or nothing: a write that fails part way (disk full) is
        cut back off, so later appends never follow half a line."""
        if self._fd is None:
            raise OSError(errno.EBADF, f"journal {self.path} is closed", str(self.path))
        try:
            write_all(self._fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def cut_to_last_line(path: Path) -> int:
    """Cut a journal back to the end of its last complete line (a crash can leave half
    a line at the end) and make that durable. Returns how many bytes were cut.
    Raises UnsafePathError for a link."""
    try:
        fd = os.open(path, os.O_RDWR | _NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _link_error(path) from None
        raise
    try:
        size = os.fstat(fd).st_size
        keep = size
        block = 64 * 1024
        while keep > 0:  # scan back from the end for the last newline
            start = max(0, keep - block)
            chunk = os.pread(fd, keep - start, start)
            newline = chunk.rfind(b"\n")
            if newline != -1:
                keep = start + newline + 1
                break
            keep = start
        if keep != size:
            os.ftruncate(fd, keep)
            os.fsync(fd)
        return size - keep
    finally:
        os.close(fd)
