"""What the daemon does with the data dir when it starts: damaged records go to
quarantine, and sessions a crash left open come back from their journals (a torn last
line cut off first, unreadable lines kept aside, the rest recovered)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import msgspec
import structlog
import trio

from ..protocol import DECODE_ERRORS, ErrorCode
from ..protocol.ops import SessionSummary
from ..store import (
    BlenderInfo,
    CommandRecord,
    EditEntry,
    LastResult,
    RecordError,
    RewindEntry,
    SessionData,
    SessionState,
    SessionStore,
    is_session_id,
)
from ..store.recovery import JournalVisitor, ScannedJournal, scan_journal
from .blender import BlenderLink, Blenders
from .lifecycle import Lifecycle
from .session import Session
from .tracking import SceneTracker

log = structlog.get_logger("startup")


async def quarantine_damaged_records(store: SessionStore) -> None:
    """Move records that cannot be read (torn, corrupt, newer format, a link) aside, so
    the rest are served; they stay listed as damaged, and nothing is deleted."""
    damaged = await store.reconcile()
    for entry in damaged:
        if entry.file.startswith("quarantine/"):
            continue
        try:
            moved = await store.quarantine(store.sessions_dir / entry.file, entry.reason)
        except OSError as error:  # a full disk: leave it where it is, listed as damaged
            log.error("quarantine_failed", file=entry.file, reason=str(error))
            continue
        log.error("record_quarantined", file=entry.file, reason=entry.reason, moved_to=str(moved))


async def recover_open_sessions(
    store: SessionStore,
    blenders: Blenders,
    lifecycle: Lifecycle,
    recovering: dict[str, SessionSummary],
    recovered: Callable[[str], None],
) -> None:
    """Bring back every session a crash left open, one by one, each read in a thread;
    `recovering` holds the ids not back yet (their commands get `busy`)."""
    for path in store.journal_paths():
        session_id = path.name.removesuffix(".journal")
        if not is_session_id(session_id):
            continue
        try:
            await _recover(session_id, store, blenders, lifecycle)
        except (RecordError, OSError) as error:
            reason = error.message if isinstance(error, RecordError) else str(error)
            try:
                moved = await store.quarantine(path, reason)
            except OSError as move_error:
                log.error("journal_unreadable", session_id=session_id, reason=str(move_error))
                continue
            log.error(
                "journal_quarantined", session_id=session_id, reason=reason, moved_to=str(moved)
            )
        finally:
            recovering.pop(session_id, None)
            recovered(session_id)


class _Rebuild(JournalVisitor):
    """The tracked state and counts of a session, rebuilt from its journal as they
    were built (runs in the scanning thread: no I/O, nothing shared)."""

    def __init__(self) -> None:
        self.tracker = SceneTracker(SessionState())
        self.command_count = 0
        self.last_command: str | None = None
        self.last_result: LastResult | None = None
        self.interrupted: RewindEntry | None = None  # a rewind the crash came in

    def opened(self, session: SessionData) -> None:
        self.tracker = SceneTracker(session.state)
        self.last_command = session.state.last_command
        self.last_result = session.state.last_result

    def command(self, command: CommandRecord, state: SessionState | None) -> None:
        if not command.housekeeping:
            self.command_count += 1
            self._outcome(command)
        if state is not None:
            self.tracker.restore(state)
        else:
            self._track(command)

    def late(self, command: CommandRecord) -> None:
        if not command.housekeeping:
            self._outcome(command)
        self._track(command)

    def edit(self, entry: EditEntry) -> None:
        with contextlib.suppress(*DECODE_ERRORS):
            self.tracker.track_edit(entry.objects, entry.removed)

    def rewind(self, entry: RewindEntry) -> None:
        if entry.status == "started":
            self.interrupted = entry
        elif self.interrupted is not None and self.interrupted.seq == entry.seq:
            self.interrupted = None

    def _outcome(self, command: CommandRecord) -> None:
        self.last_command = command.type
        error = command.error
        self.last_result = (
            LastResult(status=command.status)
            if error is None
            else LastResult(status=command.status, code=error.code, message=error.message)
        )

    def _track(self, command: CommandRecord) -> None:
        if command.status == "success" and not command.housekeeping:
            with contextlib.suppress(*DECODE_ERRORS):
                self.tracker.track(command.type, command.params, bytes(command.result))

    def state(self) -> SessionState:
        return self.tracker.session_state(self.last_command, self.last_result)


def _scan(path: Path) -> tuple[ScannedJournal, _Rebuild]:
    rebuild = _Rebuild()
    return scan_journal(path, rebuild), rebuild


async def _recover(
    session_id: str, store: SessionStore, blenders: Blenders, lifecycle: Lifecycle
) -> None:
    if store.exists(session_id):
        # The record was saved and the crash came before the journal went.
        await store.remove_journal(session_id)
        return
    await reopen(session_id, store, lifecycle, lambda info: blenders.find(info.host, info.port))


async def reopen(
    session_id: str,
    store: SessionStore,
    lifecycle: Lifecycle,
    link_for: Callable[[BlenderInfo], BlenderLink],
) -> Session:
    """Open a session again from its journal in this data dir, in the Blender
    `link_for` picks (its own, after a crash; this daemon's, when adopted)."""
    path = store.path_for(session_id, ".journal")
    torn = await store.cut_torn_tail(session_id)  # before anything is appended after it
    scanned, rebuild = await trio.to_thread.run_sync(_scan, path)
    if scanned.session.session_id != session_id:
        raise RecordError(
            ErrorCode.INTERNAL,
            f"journal {path.name} names another session inside "
            f"({scanned.session.session_id[:40]!r})",
        )
    if scanned.damaged:
        kept = await store.keep_damaged_lines(session_id, scanned.damaged)
        log.error(
            "journal_lines_damaged",
            session_id=session_id,
            lines=[line.number for line in scanned.damaged],
            kept_in=str(kept),
        )
    journal = await store.open_journal(session_id)
    await lifecycle.start_journal(journal)
    opened = scanned.session
    data = msgspec.structs.replace(
        opened,
        restarts=scanned.restarts,
        checkpoints=scanned.checkpoints,
        command_count=opened.command_count + rebuild.command_count,
        state=rebuild.state(),
    )
    blender = data.blender
    session = Session(
        data,
        link_for(blender),
        journal,
        next_seq=scanned.last_seq + 1,
        steps=scanned.steps,
    )
    if rebuild.interrupted is not None:
        session.interrupted_rewind = rebuild.interrupted
        session.busy = "finishing a rewind the daemon's restart interrupted"
    lifecycle.registry.add(session)
    log.warning(
        "session_recovered",
        session_id=session_id,
        commands=session.command_count,
        steps=scanned.last_seq,
        unknown_outcome=scanned.unknown_seqs[:100],
        torn_tail_bytes=torn,
        damaged_lines=len(scanned.damaged),
        interrupted_rewind=rebuild.interrupted.seq if rebuild.interrupted else None,
    )
    return session
