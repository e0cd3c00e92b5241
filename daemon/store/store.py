"""Session records, journals and snapshot files in the data dir. Only this package
writes there. Methods that touch the disk raise OSError (callers turn it into a
`storage` error with `storage_error`, saying what did not happen); ids are checked
before they become paths; no symbolic link is ever followed.

Long (about 700 lines) because it is the data dir's only writer: one short method per
file operation (records, journals, the index, snapshots, checkpoints, quarantine),
most of them a few lines around one call in a worker thread.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import trio

from ..protocol.errors import DECODE_ERRORS, ErrorCode, RemoteProtocolError, StorageError
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
from .index import Cursor, IndexedSession, SessionIndex
from .journal import JournalBatch, JournalWriter
from .layout import (
    RecordWriter,
    StepIndex,
    StepRef,
    build_step_index,
    check_complete,
    read_first_line,
    read_head,
    read_steps,
    step_index_path,
    write_record,
)
from .records import (
    RECORD_FORMAT,
    CommandRecord,
    JournalOpen,
    RecordError,
    RecordSummary,
    SessionData,
    SessionRecord,
    TimelineEntry,
    decode_journal_line,
    decode_record,
)
from .recovery import DamagedLine

T = TypeVar("T")

# Files that belong to a session, by suffix; deleting a session removes them all (and
# its checkpoint dir, `<id>.checkpoints`).
SESSION_FILE_SUFFIXES = (".json", ".journal", ".blend", ".png", ".steps")
CHECKPOINTS_SUFFIX = ".checkpoints"
INDEX_FILE = "index.sqlite3"


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
        self.index = SessionIndex(self.root / INDEX_FILE)
        # One caller of the index at a time, in a thread: it is one SQLite connection.
        self._index_limiter = trio.CapacityLimiter(1)
        # Told each session id whose record was saved (the shared store publishes it).
        self.on_saved: Callable[[str], None] = lambda session_id: None

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
        self.index.open()

    async def _in_index(self, function: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(function, limiter=self._index_limiter)

    def storage_error(self, error: OSError, consequence: str) -> StorageError:
        return self.data_dir.storage_error(error, consequence)

    def path_for(self, session_id: str, suffix: str = ".json") -> Path:
        """The path of one of a session's files. Raises invalid_params for a malformed
        id; the id pattern ([a-z0-9-] only) keeps the path inside the sessions dir."""
        return self.sessions_dir / f"{parse_session_id(session_id)}{suffix}"

    # --- records --------------------------------------------------------------------

    async def save(self, data: SessionData) -> SessionRecord:
        """Write the record (its history in `data`) atomically, in the line layout, and
        index it. Raises OSError."""
        record = new_record(data)
        path = self.path_for(data.session_id)
        await trio.to_thread.run_sync(write_record, path, record)
        await self.note_saved(data.session_id)
        return record

    def start_record(self, head: SessionData) -> RecordWriter:
        """A writer for a record whose history is streamed in (`head` without it); run
        it in a thread, then `note_saved`. Raises OSError."""
        return RecordWriter(self.path_for(head.session_id), new_record(head))

    async def note_saved(self, session_id: str) -> None:
        """Index a record just written (or imported), and tell `on_saved`. Raises OSError."""
        await trio.to_thread.run_sync(self._index_records, [session_id])
        self.on_saved(session_id)

    async def load(self, session_id: str) -> SessionRecord:
        """The whole record, history and all (for small uses: a million-step record is
        read with `load_head` and `history`). Raises not_found, RecordError (damaged,
        newer, a link)."""
        path = self.path_for(session_id)
        try:
            payload = await trio.to_thread.run_sync(read_file, path)
        except FileNotFoundError:
            raise _not_found(session_id) from None
        except UnsafePathError as error:
            raise RecordError(ErrorCode.INTERNAL, error.strerror or str(error)) from None
        return decode_record(payload, f"record {path.name}")

    async def load_head(self, session_id: str) -> SessionRecord:
        """The record without its history (its first line). Raises not_found,
        RecordError."""
        path = self.path_for(session_id)
        try:
            record, _ = await trio.to_thread.run_sync(read_head, path, f"record {path.name}")
        except FileNotFoundError:
            raise _not_found(session_id) from None
        return record

    async def history(
        self, session_id: str, after_seq: int, limit: int, max_bytes: int
    ) -> builtins.list[CommandRecord | TimelineEntry]:
        """Up to `limit` steps (about `max_bytes`, at least one) of a closed session
        after `after_seq`, read through its step index (rebuilt first if it is missing
        or out of date). Raises not_found, RecordError, OSError."""
        path = self._existing(session_id)

        def read() -> builtins.list[CommandRecord | TimelineEntry]:
            refs = self._with_steps(path, lambda steps: steps.after(after_seq, limit))
            return read_steps(path, _cut(refs, max_bytes))

        return await trio.to_thread.run_sync(read)

    async def last_step(self, session_id: str) -> int:
        """The last seq in a closed session's history (0: none)."""
        path = self._existing(session_id)
        return await trio.to_thread.run_sync(
            lambda: self._with_steps(path, lambda steps: steps.last_seq)
        )

    def _existing(self, session_id: str) -> Path:
        path = self.path_for(session_id)
        if not os.path.lexists(path):
            raise _not_found(session_id)
        return path

    def _with_steps(self, path: Path, use: Callable[[StepIndex], T]) -> T:
        """`use` the record's step index, rebuilt first when missing or out of date."""
        for attempt in range(2):
            try:
                with StepIndex(path) as steps:
                    if steps.matches():
                        return use(steps)
            except (FileNotFoundError, RecordError):
                pass
            if attempt == 0:
                self._normalize(path)
                build_step_index(path)
        raise RecordError(ErrorCode.INTERNAL, f"{path.name}: its step index cannot be built")

    def _normalize(self, path: Path) -> None:
        """Rewrite a record written in one line into the line layout."""
        _, is_layout = read_head(path, f"record {path.name}")
        if not is_layout:
            write_record(path, decode_record(read_file(path), f"record {path.name}"))

    def exists(self, session_id: str) -> bool:
        return os.path.lexists(self.path_for(session_id))

    # --- the index ------------------------------------------------------------------

    async def reconcile(self) -> builtins.list[DamagedRecord]:
        """Bring the index up to date with the records on disk: index new or changed
        ones (rewriting any in one line into the line layout), forget vanished ones.
        Returns the damaged records (and those in quarantine)."""
        return await trio.to_thread.run_sync(self._reconcile_sync, limiter=self._index_limiter)

    def _reconcile_sync(self) -> builtins.list[DamagedRecord]:
        self.index.stale = False
        files = self._scan_files()
        known = self.index.known()
        changed: list[str] = []
        resized: list[tuple[str, int]] = []
        damaged: list[DamagedRecord] = []
        for session_id, found in files.items():
            if found.record is None:
                continue
            if found.record.is_symlink():
                damaged.append(DamagedRecord(found.record.name, _LINKED))
                continue
            info = found.record.stat(follow_symlinks=False)
            indexed = known.get(session_id)
            if indexed is None or indexed[:2] != (info.st_size, info.st_mtime_ns):
                changed.append(session_id)
            elif indexed[2] != found.size:
                resized.append((session_id, found.size))
        self.index.set_sizes(resized)
        vanished = [
            session_id
            for session_id in known
            if session_id not in files or files[session_id].record is None
            or files[session_id].record.is_symlink()  # type: ignore[union-attr]
        ]  # fmt: skip
        self.index.remove(vanished)
        damaged += self._index_sync(changed, files)
        damaged_names = {entry.file for entry in damaged}
        self.index.remove(name.removesuffix(".json") for name in damaged_names)
        self.index.set_damaged((entry.file, entry.reason) for entry in damaged)
        return damaged + self._quarantined()

    def _index_records(self, session_ids: builtins.list[str]) -> None:
        files = self._scan_files(only=set(session_ids))
        self._index_sync(session_ids, files)

    def _index_sync(
        self, session_ids: builtins.list[str], files: dict[str, _SessionFiles]
    ) -> builtins.list[DamagedRecord]:
        rows: list[IndexedSession] = []
        damaged: list[DamagedRecord] = []
        for session_id in session_ids:
            path = self.path_for(session_id)
            try:
                record, is_layout = read_head(path, f"record {path.name}")
                if not is_layout:
                    self._normalize(path)
                    build_step_index(path)
                    record, _ = read_head(path, f"record {path.name}")
                check_complete(path)
                if record.session_id != session_id:
                    raise RecordError(
                        ErrorCode.INTERNAL, f"record {path.name} names another session inside"
                    )
                info = os.stat(path, follow_symlinks=False)
            except (OSError, RecordError) as error:
                damaged.append(DamagedRecord(path.name, _reason(error)))
                continue
            size = files[session_id].size if session_id in files else info.st_size
            rows.append(_indexed(record, size, info.st_size, info.st_mtime_ns))
        self.index.put(rows)
        return damaged

    def _scan_files(self, only: set[str] | None = None) -> dict[str, _SessionFiles]:
        """Every session's files in one pass over the sessions dir: its record's entry
        and the bytes of all its files (checkpoints included)."""
        found: dict[str, _SessionFiles] = {}
        with os.scandir(self.sessions_dir) as entries:
            for entry in entries:
                stem, dot, suffix = entry.name.partition(".")
                if not is_session_id(stem) or (only is not None and stem not in only):
                    continue
                files = found.setdefault(stem, _SessionFiles())
                if f"{dot}{suffix}" == CHECKPOINTS_SUFFIX and entry.is_dir(follow_symlinks=False):
                    files.size += _dir_bytes(entry.path)
                elif f"{dot}{suffix}" in SESSION_FILE_SUFFIXES:
                    files.size += entry.stat(follow_symlinks=False).st_size
                    if suffix == "json":
                        files.record = entry
        return found

    async def page(
        self, limit: int, below: Cursor | None, name_contains: str | None
    ) -> builtins.list[IndexedSession]:
        return await self._in_index(lambda: self.index.newest_first(limit, below, name_contains))

    async def named(self, name: str) -> builtins.list[str]:
        return await self._in_index(lambda: self.index.named(name))

    async def indexed(self, session_id: str) -> IndexedSession | None:
        return await self._in_index(lambda: self.index.get(session_id))

    async def totals(self) -> tuple[int, int, int]:
        return await self._in_index(self.index.totals)

    async def expired(
        self, keep: int | None, older_than: float | None
    ) -> builtins.list[tuple[str, int]]:
        return await self._in_index(lambda: self.index.expired(keep, older_than))

    async def closed_count(self) -> int:
        return await self._in_index(self.index.closed_count)

    async def damaged(self) -> builtins.list[DamagedRecord]:
        indexed = await self._in_index(self.index.damaged)
        quarantined = await trio.to_thread.run_sync(self._quarantined)
        return [DamagedRecord(file, reason) for file, reason in indexed] + quarantined

    async def list(self) -> tuple[builtins.list[ListedRecord], builtins.list[DamagedRecord]]:
        """Every closed session and every damaged record, as on disk now (reconciles
        first; the daemon's listings read the index instead)."""
        damaged = await self.reconcile()
        rows = await self._in_index(lambda: self.index.newest_first(1 << 62))
        listed = [ListedRecord(_summary(row), row.size_bytes) for row in reversed(rows)]
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
            removed = [
                self.path_for(session_id, suffix).name
                for suffix in SESSION_FILE_SUFFIXES
                if remove_durably(self.path_for(session_id, suffix))
            ]
            if self.remove_checkpoints(session_id):
                removed.append(self.checkpoint_dir(session_id).name)
            self.index.remove([session_id])
            return removed

        return await trio.to_thread.run_sync(remove_all, limiter=self._index_limiter)

    def checkpoint_dir(self, session_id: str) -> Path:
        return self.path_for(session_id, CHECKPOINTS_SUFFIX)

    def remove_checkpoints(self, session_id: str) -> bool:
        """Remove a session's checkpoint dir (its files, never through a link).
        Blocking. Returns whether there was one."""
        directory = self.checkpoint_dir(session_id)
        try:
            info = os.lstat(directory)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(directory)  # a link or a file where the dir should be
            return True
        for entry in os.scandir(directory):
            os.unlink(entry.path)  # unlink never follows a link
        os.rmdir(directory)
        fsync_dir(directory.parent)
        return True

    async def quarantine(self, path: Path, reason: str) -> Path:
        """Move a damaged file aside (never delete it) and say why beside it."""

        def move() -> Path:
            ensure_private_dir(self.quarantine_dir)
            target = self.quarantine_dir / f"{int(time.time())}-{secrets.token_hex(2)}-{path.name}"
            os.rename(path, target)
            atomic_write(target.with_name(target.name + ".reason.txt"), reason.encode())
            stem = path.name.partition(".")[0]
            if path.name.endswith(".json") and is_session_id(stem):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(step_index_path(path))
                self.index.remove([stem])
            self.index.forget_damaged(path.name)  # listed from quarantine from now on
            return target

        return await trio.to_thread.run_sync(move, limiter=self._index_limiter)

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
        missing = f"session {source_id} has no .blend snapshot"
        return await _copy_privately(self.path_for(source_id, ".blend"), target, missing)

    # --- checkpoints ----------------------------------------------------------------

    def checkpoint_paths(self, session_id: str, seq: int) -> tuple[Path, Path]:
        """Where the checkpoint of `seq` lives: its .blend and its scene (get_state)."""
        directory = self.checkpoint_dir(session_id)
        return directory / f"{seq:010d}.blend", directory / f"{seq:010d}.state.json"

    async def drop_empty_checkpoint_dir(self, session_id: str) -> None:
        """A session that never kept a checkpoint (its Blender could not save one)
        leaves no empty dir behind."""

        def drop() -> None:
            with contextlib.suppress(OSError):  # not empty, not there: left as it is
                os.rmdir(self.checkpoint_dir(session_id))

        await trio.to_thread.run_sync(drop)

    async def prepare_checkpoint_dir(self, session_id: str) -> Path:
        directory = self.checkpoint_dir(session_id)
        await trio.to_thread.run_sync(ensure_private_dir, directory)
        return directory

    async def keep_checkpoint(self, session_id: str, seq: int, state: bytes) -> int:
        """Make a checkpoint durable: its .blend (Blender wrote it) synced, its scene
        written beside it. Returns the bytes of both. Raises OSError (UnsafePathError
        for a link where the .blend should be)."""
        blend, state_path = self.checkpoint_paths(session_id, seq)

        def keep() -> int:
            fd = os.open(blend, os.O_RDONLY | os.O_NOFOLLOW)  # Blender saved it: else no state
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            atomic_write(state_path, state)  # syncs the dir too
            return size + len(state)

        return await trio.to_thread.run_sync(keep)

    async def read_checkpoint_state(self, session_id: str, seq: int) -> bytes:
        """A checkpoint's scene. Raises not_found, OSError."""
        _, state_path = self.checkpoint_paths(session_id, seq)
        try:
            return await trio.to_thread.run_sync(read_file, state_path)
        except FileNotFoundError:
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND, f"session {session_id} has no checkpoint at step {seq}"
            ) from None

    async def remove_checkpoint(self, session_id: str, seq: int) -> None:
        def remove() -> None:
            for path in self.checkpoint_paths(session_id, seq):
                remove_durably(path)

        await trio.to_thread.run_sync(remove)

    async def copy_checkpoint(self, session_id: str, seq: int, target: Path) -> Path:
        """Copy a checkpoint's .blend to `target` (a working copy, or a closing
        session's snapshot). Raises not_found, OSError; never through a link."""
        source, _ = self.checkpoint_paths(session_id, seq)
        missing = f"session {session_id} has no checkpoint at step {seq} (thinned out?)"
        return await _copy_privately(source, target, missing)

    # --- journals -------------------------------------------------------------------

    def journal_paths(self) -> builtins.list[Path]:
        return sorted(self.sessions_dir.glob("scene-*.journal"))

    async def journal_heads(self) -> builtins.list[SessionData]:
        """The session each journal opens with (its first line), for what is shown of
        sessions while they are being recovered; journals whose first line does not
        read are left to recovery to report."""

        def heads() -> builtins.list[SessionData]:
            found = []
            for path in self.journal_paths():
                with contextlib.suppress(OSError, RecordError, *DECODE_ERRORS):
                    line, _ = read_first_line(path)
                    opened = decode_journal_line(line.rstrip(b"\n"))
                    if isinstance(opened, JournalOpen):
                        found.append(opened.session)
            return found

        return await trio.to_thread.run_sync(heads)

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


_LINKED = "a symbolic link; the daemon never follows links in its data dir (remove it)"


@dataclass(slots=True)
class _SessionFiles:
    record: os.DirEntry[str] | None = None
    size: int = 0


def _dir_bytes(path: str) -> int:
    total = 0
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_size
    return total


async def _copy_privately(source: Path, target: Path, missing: str) -> Path:
    """Copy a .blend into a private dir (atomically, never through a link). Raises
    not_found (`missing`) when there is no source, OSError."""

    def copy() -> None:
        ensure_private_dir(target.parent)
        atomic_write(target, read_file(source))

    try:
        await trio.to_thread.run_sync(copy)
    except FileNotFoundError:
        raise RemoteProtocolError(ErrorCode.NOT_FOUND, missing) from None
    return target


def new_record(data: SessionData) -> SessionRecord:
    return SessionRecord(
        format=RECORD_FORMAT,
        session_id=data.session_id,
        saved_at=datetime.now(UTC).isoformat(),
        data=data,
    )


def _age_from(data: SessionData) -> float | None:
    if data.closed_at is None:
        return None
    return max(data.closed_at, data.imported_at or 0.0)


def _indexed(record: SessionRecord, size: int, record_size: int, mtime_ns: int) -> IndexedSession:
    data = record.data
    return IndexedSession(
        session_id=data.session_id,
        name=data.name,
        created_at=data.created_at,
        closed_at=data.closed_at,
        last_activity=data.last_activity,
        age_from=_age_from(data),
        command_count=data.command_count,
        size_bytes=size,
        restored_from=data.restored_from,
        imported_at=data.imported_at,
        blender_version=data.blender.version,
        record_size=record_size,
        record_mtime_ns=mtime_ns,
    )


def _summary(row: IndexedSession) -> RecordSummary:
    return RecordSummary(
        session_id=row.session_id,
        name=row.name,
        created_at=row.created_at,
        closed_at=row.closed_at,
        command_count=row.command_count,
        restored_from=row.restored_from,
        last_activity=row.last_activity,
        imported_at=row.imported_at,
    )


def _cut(refs: builtins.list[StepRef], max_bytes: int) -> builtins.list[StepRef]:
    total = 0
    for index, ref in enumerate(refs):
        total += ref.length
        if total > max_bytes and index > 0:
            return refs[:index]
    return refs


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
