"""Finding sessions, open or closed: references (an id or a unique name) resolved
against the open sessions and the store, listings, and a session's history."""

from __future__ import annotations

import builtins
import os
from typing import TYPE_CHECKING

import trio

from ..protocol import ErrorCode, RemoteProtocolError
from ..protocol.ops import DamagedEntry, ListResult, SessionSummary, StatsResult
from ..store import RecordError, SessionData, SessionStore, is_session_id, mentions
from ..store.index import Cursor, IndexedSession
from .registry import OpenSessions, check_reference, not_found
from .session import Session

if TYPE_CHECKING:
    from .shared import SharedSessions

DEFAULT_PAGE = 100  # sessions per page of `list`
MAX_SEARCHED = 10_000  # the newest sessions a text search reads through


class Catalog:
    def __init__(self, store: SessionStore, registry: OpenSessions) -> None:
        self.store = store
        self.registry = registry
        # Sessions a crash left open, while their journals are read back (start-up):
        # listed as `recovering`; their commands get `busy`.
        self.recovering: dict[str, SessionSummary] = {}
        # Set once the index agrees with the records on disk (start-up): listings and
        # name lookups wait for it.
        self.index_ready = trio.Event()
        # Sessions other daemons saved (`--store postgresql://...`), or None.
        self.shared: SharedSessions | None = None

    def note_recovering(self, heads: builtins.list[SessionData]) -> None:
        for head in heads:
            self.recovering[head.session_id] = SessionSummary(
                session_id=head.session_id, name=head.name, status="recovering",
                created_at=head.created_at, closed_at=None, command_count=head.command_count,
                size_bytes=0, restored_from=head.restored_from,
            )  # fmt: skip

    def recovering_id(self, ref: str) -> str | None:
        """The id of the session still being recovered that `ref` names, if any."""
        for summary in self.recovering.values():
            if ref in (summary.session_id, summary.name):
                return summary.session_id
        return None

    def check_not_recovering(self, ref: str) -> None:
        """Raise busy for a session whose journal is still being read back."""
        for summary in self.recovering.values():
            if ref in (summary.session_id, summary.name):
                raise RemoteProtocolError(
                    ErrorCode.BUSY,
                    f"session {summary.session_id} is being recovered (its journal is read "
                    "back after a restart of the daemon); retry in a moment",
                )

    async def resolve(self, ref: str) -> str:
        """A session id from an id or a unique name. Raises not_found / invalid_params.
        A session only in the shared store is copied here first."""
        if is_session_id(ref):
            if self.shared is not None and ref not in self.registry and not self.store.exists(ref):
                await self.fetch_shared(ref)
            return ref
        check_reference(ref)
        await self.index_ready.wait()
        matches = {s.session_id for s in self.registry if s.name == ref}
        matches |= set(await self.store.named(ref))
        if len(matches) == 1:
            return matches.pop()
        if not matches:
            found = await self.fetch_shared(ref)
            if found is None:
                raise not_found(ref)
            return found
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"name {ref!r} is shared by sessions {sorted(matches)}; use one of the ids",
        )

    async def fetch_shared(self, ref: str) -> str | None:
        """The id of a session saved by another daemon, copied into this data dir."""
        if self.shared is None:
            return None
        row = await self.shared.find(ref)
        if row is None:
            return None
        if row.status == "open":
            raise RemoteProtocolError(
                ErrorCode.CONFLICT, _open_elsewhere(row.session_id, row.holder)
            )
        if not await self.shared.fetch(row.session_id):
            return None
        return row.session_id

    def open_now(self, ref: str) -> Session:
        """The open session `ref` names, without waiting (the command path's lookup).
        Raises conflict for a closed session, not_found, invalid_params."""
        session = self.registry.find(ref)
        if session is not None:
            return session
        if self.recovering:
            self.check_not_recovering(ref)
        if is_session_id(ref):
            if self.store.exists(ref):
                raise _closed(ref)
            elsewhere = (
                "" if self.shared is None else
                "; in the shared store it may be open on another daemon, which takes its "
                "commands (`list` says which holds it; `adopt` takes it once that one is gone)"
            )  # fmt: skip
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND,
                f"no open session {ref!r} in this daemon{elsewhere} (run: blender-session list)",
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
            self.check_not_recovering(session_id)
            if self.store.exists(session_id):
                raise _closed(session_id)
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND, f"no session {session_id!r} (run: blender-session list)"
            )
        return session

    async def check_name_free(self, name: str) -> None:
        try:
            taken = await self.resolve(name)
        except RemoteProtocolError as error:
            if error.code is ErrorCode.NOT_FOUND:
                return
            # Used already: by several sessions, or by one open on another daemon.
            raise RemoteProtocolError(
                ErrorCode.CONFLICT, f"session name {name!r} is taken ({error.message})"
            ) from None
        raise RemoteProtocolError(
            ErrorCode.CONFLICT, f"session name {name!r} is taken by {taken}; choose another"
        )

    def summary(self, session: Session) -> SessionSummary:
        try:
            size = os.stat(session.journal.path).st_size
        except OSError:
            size = 0
        return session.summary(size)

    async def list(
        self,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
        name_contains: str | None = None,
        status: str = "all",
    ) -> ListResult:
        """A page of sessions, open and closed, newest first (closed ones from the
        index). `cursor`: where the previous page ended."""
        below = Cursor.decode(cursor) if cursor else None
        if cursor and below is None:
            raise RemoteProtocolError(
                ErrorCode.INVALID_PARAMS, f"cursor {cursor[:80]!r} is not one list gave"
            )
        await self.index_ready.wait()
        if self.store.index.stale:  # a write to it failed: catch up with the records
            await self.store.reconcile()
        found: builtins.list[tuple[tuple[float, str], SessionSummary]] = []
        if status in ("all", "open"):
            shown = [self.summary(session) for session in self.registry]
            shown += list(self.recovering.values())
            for summary in shown:
                key = (summary.created_at, summary.session_id)
                if below is not None and key >= (below.created_at, below.session_id):
                    continue
                if name_contains and name_contains.lower() not in (summary.name or "").lower():
                    continue
                found.append((key, summary))
        if status in ("all", "closed"):
            rows = await self.store.page(limit + 1, below, name_contains)
            found += [
                ((row.created_at, row.session_id), _closed_summary(row))
                for row in rows
                if row.session_id not in self.registry
            ]
        if self.shared is not None:
            found += await self._shared_rows(status, below, name_contains, found)
        found.sort(key=lambda item: item[0], reverse=True)
        page = [summary for _, summary in found[:limit]]
        next_cursor = None
        if len(found) > limit:
            last_key = found[limit - 1][0]
            next_cursor = Cursor(*last_key).encode()
        damaged = await self.store.damaged() if cursor is None else []
        return ListResult(
            sessions=page,
            damaged=[DamagedEntry(file=d.file, reason=d.reason) for d in damaged],
            next_cursor=next_cursor,
        )

    async def search(self, text: str, status: str, limit: int) -> ListResult:
        """The newest sessions (up to `limit`) whose name, id, objects' names or
        free-form data contain `text`. Records here are read for it; the shared store's
        saved sessions are searched by the database (never copied here for it)."""
        listed = await self.list(MAX_SEARCHED, None, None, status)
        elsewhere = set(await self.shared.search(text)) if self.shared is not None else set()
        found = []
        for summary in listed.sessions:
            if (
                text.lower() in (summary.name or "").lower()
                or text.lower() in summary.session_id
                or summary.session_id in elsewhere
                or await self._holds(summary.session_id, text)
            ):
                found.append(summary)
                if len(found) == limit:
                    break
        return ListResult(sessions=found, damaged=listed.damaged, next_cursor=None)

    async def _holds(self, session_id: str, text: str) -> bool:
        """Whether a session here mentions `text` (its objects, its data)."""
        session = self.registry.get(session_id)
        if session is not None:
            return mentions(session.to_data(), text)
        if not self.store.exists(session_id):
            return False  # only in the shared store (searched there), or recovering
        try:
            return mentions((await self.store.load_head(session_id)).data, text)
        except (RecordError, RemoteProtocolError, OSError):
            return False  # damaged, or gone meanwhile

    async def _shared_rows(
        self,
        status: str,
        below: Cursor | None,
        name_contains: str | None,
        found: builtins.list[tuple[tuple[float, str], SessionSummary]],
    ) -> builtins.list[tuple[tuple[float, str], SessionSummary]]:
        """The shared store's sessions not already listed: other daemons' (with who
        holds an open one) and the ones saved elsewhere."""
        assert self.shared is not None
        here = {summary.session_id for _, summary in found}
        here |= {session.session_id for session in self.registry}
        rows = []
        for row in await self.shared.rows():
            key = (row.created_at, row.session_id)
            shown = row.status
            if row.session_id in here or self.store.exists(row.session_id):
                continue  # listed already, from here
            if shown == "open" and row.holder == self.shared.holder:
                continue  # ours, closed meanwhile
            if status != "all" and shown != status:
                continue
            if below is not None and key >= (below.created_at, below.session_id):
                continue
            if name_contains and name_contains.lower() not in (row.name or "").lower():
                continue
            rows.append((key, SessionSummary(
                session_id=row.session_id, name=row.name, status=shown,
                created_at=row.created_at, closed_at=row.closed_at,
                command_count=row.command_count, size_bytes=0, restored_from=None,
                blender_version=row.blender_version, held_by=row.holder,
                detached=None if row.status == "closed" or row.holder else (
                    "no daemon holds it (its lease expired: its daemon stopped); adopt it "
                    f"to go on here (run: blender-session adopt {row.session_id})"
                ),
            )))  # fmt: skip
        return rows

    async def stats(self) -> StatsResult:
        await self.index_ready.wait()
        count, total, commands = await self.store.totals()
        return StatsResult(
            session_count=count,
            total_size_bytes=total,
            total_size_mb=round(total / (1024 * 1024), 3),
            storage_dir=str(self.store.sessions_dir),
            command_count=commands,
            open_sessions=len(self.registry),
            open_journals=len(self.store.journal_paths()),
            damaged_count=len(await self.store.damaged()),
        )


def _closed_summary(row: IndexedSession) -> SessionSummary:
    return SessionSummary(
        session_id=row.session_id,
        name=row.name,
        status="closed",
        created_at=row.created_at,
        closed_at=row.closed_at,
        command_count=row.command_count,
        size_bytes=row.size_bytes,
        restored_from=row.restored_from,
        blender_version=row.blender_version or None,
    )


def _open_elsewhere(session_id: str, holder: str | None) -> str:
    if holder is None:
        return (
            f"session {session_id} is open in the shared store, but no daemon holds it (its "
            f"daemon stopped renewing its lease): adopt it to read and record it here (run: "
            f"blender-session adopt {session_id})"
        )
    return (
        f"session {session_id} is open on the daemon {holder}: its history is read there "
        "while it records, or here once it is closed"
    )


def _closed(session_id: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.CONFLICT,
        f"session {session_id} is closed; restore it to work on it again "
        f"(run: blender-session restore {session_id})",
    )
