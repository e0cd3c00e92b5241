"""The data dir itself: its safety checks, the lock that makes one daemon its only
writer, the control token and the endpoint file clients read.

Start-up order (`main.py`): `check_and_create()`, `lock()`, and only then anything
else is read or written. A data dir another user could write into is refused: they
could plant links or forge sessions.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from ..protocol.errors import ErrorCode, StorageError
from .files import UnsafePathError, atomic_write, free_bytes, read_file, remove_durably

TOKEN_FILE = "control.token"
ENDPOINT_FILE = "control.json"
LOCK_FILE = "daemon.lock"


class DataDirError(Exception):
    """The data dir cannot be used; the message says why and what to run."""


class DataDirLocked(DataDirError):
    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(
            f"another blender-sessiond ({holder}) is using the data dir {data_dir}; "
            "stop it first, or give this one its own --data-dir"
        )


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    # Set when the token file was readable by others: fixed, but it may have leaked.
    warning: str | None = None


class DataDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    # --- start-up -------------------------------------------------------------------

    def check_and_create(self) -> None:
        """Create the data dir (0700) if missing; refuse one others may write into.
        Raises DataDirError."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            info = os.stat(self.path)
        except OSError as error:
            raise DataDirError(
                f"cannot create the data dir {self.path}: {error.strerror or error}"
            ) from None
        if not stat.S_ISDIR(info.st_mode):
            raise DataDirError(f"the data dir {self.path} is not a directory")
        if info.st_mode & 0o022:
            raise DataDirError(
                f"the data dir {self.path} can be written by other users (mode "
                f"{stat.S_IMODE(info.st_mode):o}), who could change your sessions; make it "
                f"private with: chmod 700 {self.path}"
            )
        if info.st_uid != os.geteuid():
            raise DataDirError(
                f"the data dir {self.path} belongs to another user (uid {info.st_uid}); "
                "use a data dir of your own (--data-dir)"
            )

    def lock(self) -> None:
        """Take the OS lock that makes this daemon the data dir's only writer, or raise
        DataDirLocked naming the daemon that holds it. Released when the process ends."""
        path = self.path / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise DataDirError(f"{path} is a symbolic link; remove it") from None
            raise DataDirError(f"cannot open {path}: {error.strerror or error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise DataDirLocked(self.path, f"pid {holder}" if holder else "pid unknown") from None
        self._lock_fd = fd
        with contextlib.suppress(OSError):  # the pid is for people; the lock is what counts
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- the token and the endpoint ---------------------------------------------------

    def load_or_create_token(self) -> Token:
        """The control token, created (mode 0600) on first start and kept after.
        Raises DataDirError for a link, or when it cannot be created."""
        path = self.path / TOKEN_FILE
        try:
            value = read_file(path).decode("ascii", "replace").strip()
        except FileNotFoundError:
            value = ""
        except UnsafePathError as error:
            raise DataDirError(error.strerror or str(error)) from None
        if value:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & 0o077:
                os.chmod(path, 0o600)
                return Token(
                    value,
                    f"{path} was readable by other users (mode {mode:o}); it is 0600 now, but "
                    "anyone who read it can still use it: delete it and restart the daemon "
                    "to make a new one",
                )
            return Token(value)
        value = secrets.token_urlsafe(32)
        try:
            atomic_write(path, value.encode(), mode=0o600)
        except OSError as error:
            raise DataDirError(
                f"cannot create the control token {path}: {error.strerror or error} "
                f"({self.describe_free_space()})"
            ) from None
        return Token(value)

    def write_endpoint(self, payload: bytes) -> None:
        """Write control.json. On a full disk, where the atomic write cannot get a new
        block, an existing file is overwritten in place (it fits in its block)."""
        path = self.path / ENDPOINT_FILE
        try:
            atomic_write(path, payload, mode=0o600)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # ENOENT: none
            try:
                os.pwrite(fd, payload, 0)
                os.ftruncate(fd, len(payload))
                os.fsync(fd)
            finally:
                os.close(fd)

    def remove_endpoint(self) -> None:
        remove_durably(self.path / ENDPOINT_FILE)

    # --- errors ---------------------------------------------------------------------

    def describe_free_space(self) -> str:
        free = free_bytes(self.path)
        return "free space unknown" if free is None else f"{_size(free)} free"

    def storage_error(self, error: OSError, consequence: str) -> StorageError:
        """A write to the data dir failed: say which, why, how much space is left, what
        did not happen (`consequence`), and what to do."""
        reason = error.strerror or str(error)
        if error.errno == errno.ENOSPC:
            advice = "free some space, then retry"
        elif error.errno == errno.EROFS:
            advice = "the file system is read-only; remount it writable, then retry"
        elif error.errno in (errno.EACCES, errno.EPERM):
            advice = f"fix the permissions of {self.path}, then retry"
        else:
            advice = "retry; if it persists, check the disk and the daemon's log"
        where = f" ({error.filename})" if error.filename else ""
        return StorageError(
            ErrorCode.STORAGE,
            f"cannot write to the data dir {self.path}: {reason}{where}, "
            f"{self.describe_free_space()}; {consequence}; {advice}",
        )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value, unit = count / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
