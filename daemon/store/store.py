"""Session records, journals and snapshot files in the data dir. Only this package
writes there. Methods that touch the disk raise OSError (callers turn it into a
`storage` error with `storage_error`, saying what did not happen); ids are checked
before they become paths; no symbolic link is ever followed.
"""

from __future__ import annotations

import builtins
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from ..protocol.errors import ErrorCode, RemoteProtocolError, StorageError
from .datadir import DataDir
from .files import (
    UnsafePathError,
    atomic_write,
    check_real_dir,
    cut_to_last_line,
    ensure_private_dir,
    fsync_dir,
    read_file,
    remove_durably,
)
from .ids import is_session_id, parse_session_id
from .journal import JournalBatch, JournalWriter
from .records import (
    RECORD_FORMAT,
    RecordError,
    RecordSummary,
    SessionData,
    SessionRecord,
    decode_record,
    decode_summary,
    encode_record,
)
from .recovery import DamagedLine

# Files that belong to a session, by suffix; deleting a session removes them all.
SESSION_FILE_SUFFIXES = (".json", ".journal", ".blend", ".png")


@dataclass(frozen=True, slots=True)
class ListedRecord:
    summary: RecordSummary
    size_bytes: int


@dataclass(frozen=True, slots=True)
class DamagedRecord:
    file: str
    reason: str


class SessionStore:
    def __init__(self, data_dir: DataDir, *, journal_fsync: bool = False) -> None:
        self.data_dir = data_dir
        self.root = data_dir.path
        self.sessions_dir = self.root / "sessions"
        self.quarantine_dir = self.root / "quarantine"
        self.restored_dir = self.root / "restored"
        self.staging_dir = self.root / "staging"
        self.journal_fsync = journal_fsync
        self.journals = JournalBatch()  # open journals with lines not yet written

    def prepare(self) -> None:
        """Create the sessions and staging dirs; check that the data dir's own dirs are
        real dirs; clear what an import cut short left in staging. Raises OSError
        (UnsafePathError for a link)."""
        ensure_private_dir(self.sessions_dir)
        ensure_private_dir(self.staging_dir)
        for directory in (self.quarantine_dir, self.restored_dir):
            if os.path.lexists(directory):
                check_real_dir(directory)
        for leftover in os.listdir(self.staging_dir):
            shutil.rmtree(self.staging_dir / leftover, ignore_errors=True)

    def storage_error(self, error: OSError, consequence: str) -> StorageError:
        return self.data_dir.storage_error(error, consequence)

    def path_for(self, session_id: str, suffix: str = ".json") -> Path:
        """The path of one of a session's files. Raises invalid_params for a malformed
        id; the id pattern ([a-z0-9-] only) keeps the path inside the sessions dir."""
        return self.sessions_dir / f"{parse_session_id(session_id)}{suffix}"

    # --- records --------------------------------------------------------------------

    async def save(self, data: SessionData) -> SessionRecord:
        """Write the record atomically. Raises OSError."""
        record = SessionRecord(
            format=RECORD_FORMAT,
            session_id=data.session_id,
            saved_at=datetime.now(UTC).isoformat(),
            data=data,
        )
        path = self.path_for(data.session_id)
        payload = encode_record(record)
        await trio.to_thread.run_sync(atomic_write, path, payload)
        return record

    async def load(self, session_id: str) -> SessionRecord:
        """Raises not_found, RecordError (damaged, newer, a link)."""
        path = self.path_for(session_id)
        try:
            payload = await trio.to_thread.run_sync(read_file, path)
        except FileNotFoundError:
            raise _not_found(session_id) from None
        except UnsafePathError as error:
            raise RecordError(ErrorCode.INTERNAL, error.strerror or str(error)) from None
        return decode_record(payload, f"record {path.name}")

    def exists(self, session_id: str) -> bool:
        return os.path.lexists(self.path_for(session_id))

    async def list(self) -> tuple[builtins.list[ListedRecord], builtins.list[DamagedRecord]]:
        return await trio.to_thread.run_sync(self._list_sync)

    def _list_sync(self) -> tuple[builtins.list[ListedRecord], builtins.list[DamagedRecord]]:
        listed: list[ListedRecord] = []
        damaged: list[DamagedRecord] = []
        sizes: dict[str, int] = {}  # session id -> bytes of all its files: one scan
        records: list[os.DirEntry[str]] = []
        with os.scandir(self.sessions_dir) as entries:
            for entry in entries:
                stem, dot, suffix = entry.name.partition(".")
                if not is_session_id(stem) or f"{dot}{suffix}" not in SESSION_FILE_SUFFIXES:
                    continue
                info = entry.stat(follow_symlinks=False)
                sizes[stem] = sizes.get(stem, 0) + info.st_size
                if suffix == "json":
                    records.append(entry)
        for entry in sorted(records, key=lambda item: item.name):
            try:
                if entry.is_symlink():
                    raise RecordError(
                        ErrorCode.INTERNAL,
                        f"record {entry.name} is a symbolic link; the daemon never follows "
                        "links in its data dir (remove it)",
                    )
                summary = decode_summary(read_file(Path(entry.path)), f"record {entry.name}")
            except (OSError, RecordError) as error:
                damaged.append(DamagedRecord(entry.name, _reason(error)))
                continue
            listed.append(ListedRecord(summary, sizes.get(summary.session_id, 0)))
        damaged += self._quarantined()
        return listed, damaged

    def _quarantined(self) -> builtins.list[DamagedRecord]:
        if not os.path.isdir(self.quarantine_dir) or os.path.islink(self.quarantine_dir):
            return []
        found = []
        for reason_file in sorted(self.quarantine_dir.glob("*.reason.txt")):
            try:
                reason = read_file(reason_file).decode("utf-8", "replace")
            except OSError:
                continue
            moved = reason_file.name.removesuffix(".reason.txt")
            found.append(DamagedRecord(f"quarantine/{moved}", reason))
        return found

    async def delete(self, session_id: str) -> builtins.list[str]:
        """Remove every file of a closed session. Raises not_found if it has no record."""
        if not self.exists(session_id):
            raise _not_found(session_id)

        def remove_all() -> builtins.list[str]:
            return [
                self.path_for(session_id, suffix).name
                for suffix in SESSION_FILE_SUFFIXES
                if remove_durably(self.path_for(session_id, suffix))
            ]

        return await trio.to_thread.run_sync(remove_all)

    async def quarantine(self, path: Path, reason: str) -> Path:
        """Move a damaged file aside (never delete it) and say why beside it."""

        def move() -> Path:
            ensure_private_dir(self.quarantine_dir)
            target = self.quarantine_dir / f"{int(time.time())}-{secrets.token_hex(2)}-{path.name}"
            os.rename(path, target)
            atomic_write(target.with_name(target.name + ".reason.txt"), reason.encode())
            return target

        return await trio.to_thread.run_sync(move)

    async def keep_damaged_lines(self, session_id: str, lines: builtins.list[DamagedLine]) -> Path:
        """Copy a journal's unreadable lines to quarantine (once per line), for a
        person to look at; the journal itself goes on without them."""

        def write() -> Path:
            ensure_private_dir(self.quarantine_dir)
            target = self.quarantine_dir / f"{parse_session_id(session_id)}.journal-lines"
            body = b"".join(
                b"line %d: %s\n%s\n" % (line.number, line.reason.encode(), line.data)
                for line in lines
            )
            atomic_write(target, body)
            return target

        return await trio.to_thread.run_sync(write)

    # --- snapshot files ---------------------------------------------------------------

    async def write_thumbnail(self, session_id: str, png: bytes) -> str:
        path = self.path_for(session_id, ".png")
        await trio.to_thread.run_sync(atomic_write, path, png)
        return path.name

    async def read_thumbnail(self, session_id: str) -> bytes:
        try:
            return await trio.to_thread.run_sync(read_file, self.path_for(session_id, ".png"))
        except FileNotFoundError:
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND,
                f"session {session_id} has no thumbnail (it closed without Blender, or "
                "thumbnails were off)",
            ) from None

    def has_blend(self, session_id: str) -> bool:
        path = self.path_for(session_id, ".blend")
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False

    async def sync_written(self, path: Path) -> None:
        """Make a file another process (Blender) wrote durable: fsync it and its dir.
        Raises UnsafePathError if what is there now is a link."""

        def sync() -> None:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(path.parent)

        await trio.to_thread.run_sync(sync)

    def working_copy_path(self, session_id: str) -> Path:
        """Where a restored session's .blend lives, so saves in Blender never touch the
        snapshot it came from."""
        return self.restored_dir / f"{parse_session_id(session_id)}.blend"

    async def copy_snapshot(self, source_id: str, target: Path) -> Path:
        """Copy a session's .blend to `target` (in the restored dir). Raises
        not_found, OSError; never reads or writes through a link."""
        source = self.path_for(source_id, ".blend")

        def copy() -> None:
            ensure_private_dir(target.parent)
            atomic_write(target, read_file(source))

        try:
            await trio.to_thread.run_sync(copy)
        except FileNotFoundError:
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND, f"session {source_id} has no .blend snapshot"
            ) from None
        return target

    # --- journals -------------------------------------------------------------------

    def journal_paths(self) -> builtins.list[Path]:
        return sorted(self.sessions_dir.glob("scene-*.journal"))

    def journal_exists(self, session_id: str) -> bool:
        return os.path.lexists(self.path_for(session_id, ".journal"))

    async def open_journal(self, session_id: str) -> JournalWriter:
        """Open (or create) a session's journal for appending. Raises OSError."""
        journal = JournalWriter(
            self.path_for(session_id, ".journal"), fsync=self.journal_fsync, batch=self.journals
        )
        await journal.open()
        return journal

    async def cut_torn_tail(self, session_id: str) -> int:
        """Cut a crashed journal back to its last complete line, durably, before anything
        is appended to it. Returns the bytes cut."""
        return await trio.to_thread.run_sync(
            cut_to_last_line, self.path_for(session_id, ".journal")
        )

    async def remove_journal(self, session_id: str) -> None:
        await trio.to_thread.run_sync(remove_durably, self.path_for(session_id, ".journal"))


def _reason(error: Exception) -> str:
    if isinstance(error, RecordError):
        return error.message
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


def _not_found(session_id: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.NOT_FOUND,
        f"no saved session {session_id!r} in this data dir (run: blender-session list)",
    )
