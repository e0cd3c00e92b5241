"""Finding sessions, open or closed: references (an id or a unique name) resolved
against the open sessions and the store, listings, and a session's history."""

from __future__ import annotations

import builtins
import os

import trio

from ..protocol import ErrorCode, RemoteProtocolError
from ..protocol.ops import DamagedEntry, ListResult, SessionSummary, StatsResult
from ..store import CommandRecord, SessionStore, is_session_id, replay_journal
from .registry import OpenSessions, check_reference, not_found
from .session import Session


class Catalog:
    def __init__(self, store: SessionStore, registry: OpenSessions) -> None:
        self.store = store
        self.registry = registry

    async def resolve(self, ref: str) -> str:
        """A session id from an id or a unique name. Raises not_found / invalid_params."""
        if is_session_id(ref):
            return ref
        check_reference(ref)
        matches = {s.session_id for s in self.registry if s.name == ref}
        listed, _ = await self.store.list()
        matches |= {item.summary.session_id for item in listed if item.summary.name == ref}
        if len(matches) == 1:
            return matches.pop()
        if not matches:
            raise not_found(ref)
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"name {ref!r} is shared by sessions {sorted(matches)}; use one of the ids",
        )

    def open_now(self, ref: str) -> Session:
        """The open session `ref` names, without waiting (the command path's lookup).
        Raises conflict for a closed session, not_found, invalid_params."""
        session = self.registry.find(ref)
        if session is not None:
            return session
        if is_session_id(ref):
            if self.store.exists(ref):
                raise _closed(ref)
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND, f"no session {ref!r} (run: blender-session list)"
            )
        check_reference(ref)
        raise RemoteProtocolError(
            ErrorCode.NOT_FOUND,
            f"no open session named {ref!r}; a closed session is worked on again with "
            f"restore (run: blender-session list)",
        )

    async def open(self, ref: str) -> Session:
        """The open session `ref` names (by id, or by name among all sessions)."""
        session_id = await self.resolve(ref)
        session = self.registry.get(session_id)
        if session is None:
            if self.store.exists(session_id):
                raise _closed(session_id)
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND, f"no session {session_id!r} (run: blender-session list)"
            )
        return session

    async def check_name_free(self, name: str) -> None:
        try:
            taken = await self.resolve(name)
        except RemoteProtocolError:
            return
        raise RemoteProtocolError(
            ErrorCode.CONFLICT, f"session name {name!r} is taken by {taken}; choose another"
        )

    async def history(self, session: Session) -> builtins.list[CommandRecord]:
        """Every recorded command of an open session: its journal, plus the outcomes
        the journal could not take."""
        session.journal.flush()  # what is still pending goes in first (or to unjournaled)
        replayed = await trio.to_thread.run_sync(replay_journal, session.journal.path)
        commands = {command.seq: command for command in replayed.commands}
        commands.update(session.unjournaled)
        return [commands[seq] for seq in sorted(commands)]

    def summary(self, session: Session) -> SessionSummary:
        try:
            size = os.stat(session.journal.path).st_size
        except OSError:
            size = 0
        return session.summary(size)

    async def list(self) -> ListResult:
        listed, damaged = await self.store.list()
        summaries = [self.summary(session) for session in self.registry]
        summaries += [
            SessionSummary(
                session_id=item.summary.session_id,
                name=item.summary.name,
                status="closed",
                created_at=item.summary.created_at,
                closed_at=item.summary.closed_at,
                command_count=item.summary.command_count,
                size_bytes=item.size_bytes,
                restored_from=item.summary.restored_from,
            )
            for item in listed
            if item.summary.session_id not in self.registry
        ]
        summaries.sort(key=lambda s: s.created_at)
        return ListResult(
            sessions=summaries,
            damaged=[DamagedEntry(file=d.file, reason=d.reason) for d in damaged],
        )

    async def stats(self) -> StatsResult:
        listed, damaged = await self.store.list()
        total = sum(item.size_bytes for item in listed)
        return StatsResult(
            session_count=len(listed),
            total_size_bytes=total,
            total_size_mb=round(total / (1024 * 1024), 3),
            storage_dir=str(self.store.sessions_dir),
            command_count=sum(item.summary.command_count for item in listed),
            open_sessions=len(self.registry),
            open_journals=len(self.store.journal_paths()),
            damaged_count=len(damaged),
        )


def _closed(session_id: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.CONFLICT,
        f"session {session_id} is closed; restore it to work on it again "
        f"(run: blender-session restore {session_id})",
    )
