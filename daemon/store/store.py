"""The data dir: session records, journals, the control token. Only this package
writes there."""

from __future__ import annotations

import builtins
import contextlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from ..protocol.errors import ErrorCode, RemoteProtocolError
from .files import atomic_write, fsync_dir, remove_durably
from .ids import parse_session_id
from .journal import JournalWriter
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

TOKEN_FILE = "control.token"
ENDPOINT_FILE = "control.json"
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
    def __init__(self, data_dir: Path, *, journal_fsync: bool = False) -> None:
        self.data_dir = data_dir
        self.sessions_dir = data_dir / "sessions"
        self.quarantine_dir = data_dir / "quarantine"
        self.journal_fsync = journal_fsync

    # --- layout ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the data dir (private to the user) and its sessions dir."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.sessions_dir.mkdir(exist_ok=True, mode=0o700)

    def path_for(self, session_id: str, suffix: str = ".json") -> Path:
        """The path of one of a session's files, after checking the id.

        Raises invalid_params for a malformed id. The id pattern alone keeps paths
        inside the sessions dir; the resolve check is a second lock on the same door.
        """
        checked = parse_session_id(session_id)
        path = (self.sessions_dir / f"{checked}{suffix}").resolve()
        if path.parent != self.sessions_dir.resolve():
            raise RemoteProtocolError(
                ErrorCode.INVALID_PARAMS, f"session id {session_id!r} leads outside the data dir"
            )
        return path

    # --- records --------------------------------------------------------------------

    async def save(self, data: SessionData) -> SessionRecord:
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
        path = self.path_for(session_id)
        try:
            payload = await trio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise _not_found(session_id) from None
        return decode_record(payload, f"record {path.name}")

    def exists(self, session_id: str) -> bool:
        return self.path_for(session_id).exists()

    async def list(self) -> tuple[builtins.list[ListedRecord], builtins.list[DamagedRecord]]:
        return await trio.to_thread.run_sync(self._list_sync)

    def _list_sync(self) -> tuple[builtins.list[ListedRecord], builtins.list[DamagedRecord]]:
        listed: list[ListedRecord] = []
        damaged: list[DamagedRecord] = []
        for path in sorted(self.sessions_dir.glob("scene-*.json")):
            try:
                payload = path.read_bytes()
                summary = decode_summary(payload, f"record {path.name}")
            except (OSError, RecordError) as error:
                damaged.append(DamagedRecord(path.name, str(error)))
                continue
            listed.append(ListedRecord(summary, self._size_of(summary.session_id)))
        for reason_file in sorted(self.quarantine_dir.glob("*.reason.txt")):
            with contextlib.suppress(OSError):
                moved = reason_file.name.removesuffix(".reason.txt")
                damaged.append(DamagedRecord(f"quarantine/{moved}", reason_file.read_text()))
        return listed, damaged

    def _size_of(self, session_id: str) -> int:
        total = 0
        for suffix in SESSION_FILE_SUFFIXES:
            with contextlib.suppress(OSError):
                total += self.path_for(session_id, suffix).stat().st_size
        return total

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

    async def stats(self) -> dict[str, object]:
        listed, damaged = await self.list()
        total = sum(item.size_bytes for item in listed)
        return {
            "session_count": len(listed),
            "total_size_bytes": total,
            "total_size_mb": round(total / (1024 * 1024), 3),
            "storage_dir": str(self.sessions_dir),
            "command_count": sum(item.summary.command_count for item in listed),
            "open_journals": len(self.journal_paths()),
            "damaged_count": len(damaged),
        }

    async def quarantine(self, path: Path, reason: str) -> Path:
        """Move a damaged file aside (never delete it) and say why beside it."""

        def move() -> Path:
            self.quarantine_dir.mkdir(exist_ok=True, mode=0o700)
            target = self.quarantine_dir / f"{int(time.time())}-{secrets.token_hex(2)}-{path.name}"
            shutil.move(path, target)
            atomic_write(target.with_name(target.name + ".reason.txt"), reason.encode())
            return target

        return await trio.to_thread.run_sync(move)

    # --- snapshot files ---------------------------------------------------------------

    async def write_thumbnail(self, session_id: str, png: bytes) -> str:
        path = self.path_for(session_id, ".png")
        await trio.to_thread.run_sync(atomic_write, path, png)
        return path.name

    async def read_thumbnail(self, session_id: str) -> bytes:
        try:
            return await trio.to_thread.run_sync(self.path_for(session_id, ".png").read_bytes)
        except FileNotFoundError:
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND,
                f"session {session_id} has no thumbnail (it closed without Blender, or "
                "thumbnails were off)",
            ) from None

    async def sync_written(self, path: Path) -> None:
        """Make a file another process (Blender) wrote durable: fsync it and its dir."""

        def sync() -> None:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(path.parent)

        await trio.to_thread.run_sync(sync)

    def working_copy_path(self, session_id: str) -> Path:
        """Where a restored session's .blend lives, so saves in Blender never touch the
        snapshot it came from."""
        checked = self.path_for(session_id).stem
        return self.data_dir / "restored" / f"{checked}.blend"

    async def copy_snapshot(self, source_id: str, target: Path) -> Path:
        source = self.path_for(source_id, ".blend")

        def copy() -> None:
            target.parent.mkdir(exist_ok=True, mode=0o700)
            atomic_write(target, source.read_bytes())

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

    async def open_journal(self, session_id: str) -> JournalWriter:
        journal = JournalWriter(self.path_for(session_id, ".journal"), fsync=self.journal_fsync)
        await journal.open()
        return journal

    async def remove_journal(self, session_id: str) -> None:
        await trio.to_thread.run_sync(remove_durably, self.path_for(session_id, ".journal"))

    # --- control endpoint -----------------------------------------------------------

    def load_or_create_token(self) -> str:
        """The control token, created (mode 0600) on first start and kept after."""
        path = self.data_dir / TOKEN_FILE
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            token = ""
        if token:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            return token
        token = secrets.token_urlsafe(32)
        atomic_write(path, token.encode(), mode=0o600)
        return token

    def write_endpoint(self, payload: bytes) -> None:
        atomic_write(self.data_dir / ENDPOINT_FILE, payload, mode=0o600)

    def remove_endpoint(self) -> None:
        remove_durably(self.data_dir / ENDPOINT_FILE)


def storage_error(error: OSError) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.STORAGE,
        f"cannot write to the data dir: {error.strerror or error} ({error.filename or ''}); "
        "the session is kept in memory; free space or fix permissions, then retry",
    )


def _not_found(session_id: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.NOT_FOUND,
        f"no saved session {session_id!r} in this data dir (run: blender-session list)",
    )
