"""What the daemon does with the data dir when it starts: damaged records go to
quarantine, and sessions a crash left open come back from their journals (a torn last
line cut off first, unreadable lines kept aside, the rest recovered)."""

from __future__ import annotations

import contextlib

import msgspec
import structlog
import trio

from ..protocol import ErrorCode
from ..store import RecordError, SessionStore, is_session_id, replay_journal
from .blender import Blenders
from .lifecycle import Lifecycle
from .session import Session

log = structlog.get_logger("startup")


async def quarantine_damaged_records(store: SessionStore) -> None:
    """Move records that cannot be read (torn, corrupt, newer format, a link) aside, so
    the rest are served; they stay listed as damaged, and nothing is deleted."""
    _, damaged = await store.list()
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
    store: SessionStore, blenders: Blenders, lifecycle: Lifecycle
) -> None:
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


async def _recover(
    session_id: str, store: SessionStore, blenders: Blenders, lifecycle: Lifecycle
) -> None:
    if store.exists(session_id):
        # The record was saved and the crash came before the journal went.
        await store.remove_journal(session_id)
        return
    path = store.path_for(session_id, ".journal")
    torn = await store.cut_torn_tail(session_id)  # before anything is appended after it
    replayed = await trio.to_thread.run_sync(replay_journal, path)
    if replayed.session.session_id != session_id:
        raise RecordError(
            ErrorCode.INTERNAL,
            f"journal {path.name} names another session inside "
            f"({replayed.session.session_id[:40]!r})",
        )
    if replayed.damaged:
        kept = await store.keep_damaged_lines(session_id, replayed.damaged)
        log.error(
            "journal_lines_damaged",
            session_id=session_id,
            lines=[line.number for line in replayed.damaged],
            kept_in=str(kept),
        )
    journal = await store.open_journal(session_id)
    await lifecycle.start_journal(journal)
    data = msgspec.structs.replace(replayed.session, restarts=replayed.restarts)
    blender = data.blender
    session = Session(
        data,
        blenders.find(blender.host, blender.port),
        journal,
        next_seq=max((c.seq for c in replayed.commands), default=0) + 1,
    )
    for command in replayed.commands:  # the tracked state, rebuilt as it was built
        session.count_recovered(command)
        if command.seq in replayed.states:
            session.tracker.restore(replayed.states[command.seq])
        elif command.status == "success" and not command.housekeeping:
            with contextlib.suppress(msgspec.DecodeError, RecursionError):
                session.tracker.track(command.type, command.params, bytes(command.result))
    lifecycle.registry.add(session)
    log.warning(
        "session_recovered",
        session_id=session_id,
        commands=session.command_count,
        unknown_outcome=replayed.unknown_seqs,
        torn_tail_bytes=torn,
        damaged_lines=len(replayed.damaged),
    )
