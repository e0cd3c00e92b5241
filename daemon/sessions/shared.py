"""Saved sessions shared through PostgreSQL (`--store postgresql://...`, issue 18's
first part): the local data dir stays where this daemon works; what it saves is
published to the database, and a session another daemon saved is fetched from it on
first use (then it is a local record like any other).

- Publishing: every record saved (close, the thumbnail after it, import) is queued and
  sent with its files in one transaction, in the background, retried with backoff while
  the database is away; at start, the local records the database lacks are queued.
- Fetching: `resolve`, `list` and everything built on them (show, log, diff, thumbnail,
  restore, export) see the database's sessions too; a session only there is copied into
  the local data dir before it is read.
- Leases: each open session is held in the database (a lease row, renewed every
  LEASE_S / 3 and when one opens), so every daemon's `list` says which daemon holds it;
  one that stops renewing loses them when they expire.

- Journals: each open session's new journal lines are copied to the database every
  SHIP_EVERY_S, behind the local journal (a client is answered as without --store).

The database is reached through one connection used from one worker thread at a time
(psycopg has no trio support). Not here yet: answering after the database's commit,
adopting a dead daemon's sessions, events across daemons (see docs/fleet.md).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
import structlog
import trio

from ..pgstore.catalog import CatalogRow, PgCatalog, saved_row
from ..pgstore.migrate import local_files
from ..protocol.ops import SessionSummary
from ..store import RecordError, SessionStore, is_session_id
from ..store.files import atomic_write, ensure_private_dir, read_file
from ..store.layout import read_head

log = structlog.get_logger("shared")
T = TypeVar("T")
LEASE_S = 30.0
SHIP_EVERY_S = 0.5  # how often open sessions' new journal lines go to the database
RETRY_MAX_S = 30.0
# Journal read per session and pass, at most: twice the largest line there can be (a
# message is at most 16 MiB), so a pass always ends on a whole line.
MAX_SHIP_BYTES = 32 * 1024 * 1024


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(MAX_SHIP_BYTES)


def _append(catalog: PgCatalog, *, session_id: str, lines: list[tuple[int, bytes]]) -> int:
    return catalog.append_journal(session_id, lines)


def _put(catalog: PgCatalog, *, record: bytes, row: CatalogRow, files: dict[str, bytes]) -> None:
    catalog.put_record(record, row, files)


class SharedSessions:
    def __init__(
        self, url: str, store: SessionStore, open_sessions: Callable[[], list[SessionSummary]]
    ) -> None:
        self.url = url
        self.store = store
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{store.root}"
        self._catalog: PgCatalog | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._pending: set[str] = set()
        self._wake = trio.Event()
        self.open_sessions = open_sessions  # this daemon's, each held by a lease
        self._renew_now = True
        # Each open session's journal: bytes and lines copied to the database so far.
        self._shipped: dict[str, tuple[int, int]] = {}
        self.connected = trio.Event()

    # --- the connection -------------------------------------------------------------

    async def _call(self, work: Callable[[PgCatalog], T]) -> T:
        def run() -> T:
            if self._catalog is None:
                self._catalog = PgCatalog(self.url)
            try:
                return work(self._catalog)
            except psycopg.OperationalError:
                self._catalog.close()
                self._catalog = None  # reconnect next time
                raise

        return await trio.to_thread.run_sync(run, limiter=self._limiter)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        failures = 0
        while True:
            try:
                await self._call(lambda catalog: catalog.version)
                self.connected.set()
                await self._queue_unpublished()
                renew_at = 0.0
                while True:
                    await self._publish_pending()
                    if self._renew_now or trio.current_time() >= renew_at:
                        self._renew_now = False
                        await self._renew_leases()
                        renew_at = trio.current_time() + LEASE_S / 3
                    await self._ship_journals()
                    pause = SHIP_EVERY_S if self.open_sessions() else LEASE_S / 3
                    with trio.move_on_after(pause):
                        await self._wake.wait()
                    self._wake = trio.Event()
                    failures = 0
            except (psycopg.Error, OSError) as error:
                failures += 1
                wait = min(RETRY_MAX_S, 0.5 * 2 ** min(failures, 10))
                log.warning("shared_store_unreachable", reason=str(error).strip(), retry_s=wait)
                await trio.sleep(wait)

    # --- publishing -----------------------------------------------------------------

    def saved(self, session_id: str) -> None:
        """A record was saved here: publish it (and its files) soon."""
        self._pending.add(session_id)
        self._wake.set()

    async def _queue_unpublished(self) -> None:
        local = [path.stem for path in self.store.sessions_dir.glob("scene-*.json")]
        known = await self._call(lambda catalog: {r.session_id for r in catalog.sessions()})
        self._pending.update(session_id for session_id in local if session_id not in known)

    async def _publish_pending(self) -> None:
        for session_id in sorted(self._pending):
            path = self.store.path_for(session_id)
            try:
                record = await trio.to_thread.run_sync(read_file, path)
                data = (await trio.to_thread.run_sync(read_head, path, path.name))[0].data
                files = {
                    name: await trio.to_thread.run_sync(read_file, file)
                    for name, file in local_files(self.store.sessions_dir, session_id).items()
                }
            except (FileNotFoundError, RecordError) as error:  # deleted or damaged here
                log.warning("not_published", session_id=session_id, reason=str(error))
                self._pending.discard(session_id)
                continue
            row = saved_row(data)
            await self._call(functools.partial(_put, record=record, row=row, files=files))
            self._pending.discard(session_id)
            log.info("session_published", session_id=session_id, files=len(files))

    # --- leases ---------------------------------------------------------------------

    def wake(self) -> None:
        """Something changed (a session opened): renew the leases now."""
        self._renew_now = True
        self._wake.set()

    # --- journals -------------------------------------------------------------------

    async def _ship_journals(self) -> None:
        """Copy the new complete lines of each open session's journal to the database
        (one transaction per session and pass). A copy, behind the local journal: a
        client is answered once its line is in the local file, as without --store."""
        open_ids = {summary.session_id for summary in self.open_sessions()}
        for gone in set(self._shipped) - open_ids:
            del self._shipped[gone]
        for session_id in sorted(open_ids):
            offset, number = self._shipped.get(session_id, (0, 0))
            path = self.store.path_for(session_id, ".journal")
            try:
                data = await trio.to_thread.run_sync(_read_from, path, offset)
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1
            if not end:
                continue
            lines = data[:end].split(b"\n")[:-1]
            numbered = [(number + index + 1, line) for index, line in enumerate(lines) if line]
            await self._call(functools.partial(_append, session_id=session_id, lines=numbered))
            self._shipped[session_id] = (offset + end, number + len(lines))

    async def _renew_leases(self) -> None:
        held = self.open_sessions()

        def renew(catalog: PgCatalog) -> None:
            for summary in held:
                catalog.note_open(CatalogRow(
                    session_id=summary.session_id, name=summary.name, status="open",
                    created_at=summary.created_at, closed_at=None,
                    command_count=summary.command_count,
                    blender_version=summary.blender_version, holder=None,
                ))  # fmt: skip
                catalog.acquire(summary.session_id, self.holder, LEASE_S)

        await self._call(renew)

    # --- reading --------------------------------------------------------------------

    async def rows(self) -> list[CatalogRow]:
        """The database's sessions (none while it is away)."""
        try:
            return await self._call(lambda catalog: catalog.sessions())
        except (psycopg.Error, OSError) as error:
            log.warning("shared_store_unreachable", reason=str(error).strip())
            return []

    async def find(self, ref: str) -> str | None:
        """The id of the database's session `ref` names (an id or a unique name)."""
        for row in await self.rows():
            if row.session_id == ref or (not is_session_id(ref) and row.name == ref):
                return row.session_id
        return None

    async def fetch(self, session_id: str) -> bool:
        """Copy a session saved by another daemon into this data dir (its record last,
        so a record here always has its files). False when the database lacks it."""
        target = self.store.path_for(session_id)
        if target.exists():
            return True

        def download(catalog: PgCatalog) -> dict[str, bytes] | None:
            names = catalog.files(session_id)
            if "record.json" not in names:
                return None
            return {name: catalog.file(session_id, name) or b"" for name in names}

        try:
            files = await self._call(download)
        except (psycopg.Error, OSError):
            return False
        if files is None:
            return False
        sessions = self.store.sessions_dir

        def write() -> None:
            for name, data in files.items():
                if name == "record.json":
                    continue
                if name in ("blend", "png"):
                    atomic_write(sessions / f"{session_id}.{name}", data)
                elif name.startswith("checkpoints/") and "/" not in name[12:]:
                    folder = sessions / f"{session_id}.checkpoints"
                    ensure_private_dir(folder)
                    atomic_write(folder / name[12:], data)
            atomic_write(target, files["record.json"])

        await trio.to_thread.run_sync(write)
        await self.store.note_saved(session_id)
        self._pending.discard(session_id)  # it came from there: nothing to send back
        log.info("session_fetched", session_id=session_id, files=len(files))
        return True
