"""What the daemon does with the data dir when it starts: damaged records go to
quarantine, and sessions a crash left open come back from their journals."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio

from .session import Session
from .store import RecordError, is_session_id, replay_journal

if TYPE_CHECKING:
    from .sessions import SessionManager

log = structlog.get_logger("startup")


async def quarantine_damaged_records(manager: SessionManager) -> None:
    """Move records that cannot be read (torn, corrupt, newer format) aside, so the
    rest are served; they stay listed as damaged, and nothing is deleted."""
    _, damaged = await manager.store.list()
    for entry in damaged:
        if entry.file.startswith("quarantine/"):
            continue
        moved = await manager.store.quarantine(
            manager.store.sessions_dir / entry.file, entry.reason
        )
        log.error("record_quarantined", file=entry.file, reason=entry.reason, moved_to=str(moved))


async def recover_open_sessions(manager: SessionManager) -> None:
    for path in manager.store.journal_paths():
        session_id = path.name.removesuffix(".journal")
        if not is_session_id(session_id):
            continue
        try:
            replayed = await trio.to_thread.run_sync(replay_journal, path)
        except (RecordError, OSError) as error:
            moved = await manager.store.quarantine(path, str(error))
            log.error(
                "journal_quarantined",
                session_id=session_id,
                reason=str(error),
                moved_to=str(moved),
            )
            continue
        if manager.store.exists(session_id):
            # The record was saved and the crash came before the journal went.
            await manager.store.remove_journal(session_id)
            continue
        journal = await manager.store.open_journal(session_id)
        await manager.nursery().start(journal.run)
        blender = replayed.session.blender
        session = Session(
            replayed.session,
            manager.links.get(f"{blender.host}:{blender.port}", manager.link),
            journal,
            next_seq=max((c.seq for c in replayed.commands), default=0) + 1,
        )
        for command in replayed.commands:  # the tracked state, rebuilt as it was built
            session.record(command)
            if command.seq in replayed.states:
                session.apply_state_record(replayed.states[command.seq])
            elif command.status == "success" and not command.housekeeping:
                with contextlib.suppress(msgspec.DecodeError):
                    session.track(command.type, command.params, bytes(command.result))
        manager.adopt(session)
        log.warning(
            "session_recovered",
            session_id=session_id,
            commands=session.command_count,
            unknown_outcome=replayed.unknown_seqs,
            torn_tail_bytes=len(replayed.torn_tail),
        )
