"""Sessions shared through PostgreSQL (`--store postgresql://...`, issue 18): the local
data dir stays where this daemon works (and its journals the write-ahead log); what it
records is copied to the database, and a session another daemon saved is fetched from
it on first use (then it is a local record like any other).

- Journals: each open session's journal goes to the database as it is written, and a
  command is answered once its line is committed there (replication.py).
- Publishing: every record saved (close, the thumbnail after it, import) is queued and
  sent with its files in one transaction, in the background, retried with backoff while
  the database is away; at start, the local records the database lacks are queued. A
  session another daemon adopted meanwhile is not published from here.
- Fetching: `resolve`, `list` and everything built on them (show, log, diff, thumbnail,
  restore, export) see the database's sessions too; a session only there is copied into
  the local data dir before it is read.
- Leases: each open session is held in the database (a lease row, taken by its first
  journal copy, renewed with every one and every LEASE_S / 3), so every daemon's
  `list` says which daemon holds it; one that stops renewing loses them when they
  expire, and another may then adopt them (`take_over`: its journal and checkpoints
  brought here).

Two connections, each used from one worker thread at a time (connection.py): one for
the journals, so a large publish never delays an answer, and one for the rest.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from typing import TypeVar

import psycopg
import structlog
import trio

from ..events import SharedChanged
from ..pgstore.catalog import change_note, saved_row
from ..pgstore.migrate import local_files
from ..protocol import ErrorCode, RemoteProtocolError
from ..protocol.ops import SessionSummary
from ..store import RecordError, SessionStore, is_session_id
from ..store.files import atomic_write, ensure_private_dir, read_file
from ..store.layout import read_head
from ..store.shared_catalog import CatalogRow, LeaseHeld, SharedCatalog
from .connection import Connection
from .fleet_events import FleetListener
from .replication import DEFAULT_BACKLOG_BYTES, JournalShipping, Start, open_row

T = TypeVar("T")
log = structlog.get_logger("shared")
LEASE_S = 30.0
READ_WAIT_S = 5.0  # a list or a name lookup waits no longer for the database
RETRY_MAX_S = 30.0
CHECKPOINT_PREFIX = "checkpoints/"


def _put(
    catalog: SharedCatalog, *, record: bytes, row: CatalogRow, files: dict[str, bytes], holder: str
) -> None:
    catalog.put_record(record, row, files, holder)


class SharedSessions:
    def __init__(
        self,
        url: str,
        store: SessionStore,
        open_sessions: Callable[[], list[SessionSummary]],
        summary_of: Callable[[str], SessionSummary | None],
        backlog_bytes: int = DEFAULT_BACKLOG_BYTES,
        lease_s: float = LEASE_S,
        publish: Callable[[SharedChanged], None] = lambda event: None,
    ) -> None:
        self.url = url
        self.lease_s = lease_s
        self.store = store
        # The daemon's name in the database: one daemon runs on a data dir at a time (its
        # lock), so a daemon restarted on it is the same holder and keeps its leases.
        self.holder = f"{socket.gethostname()}:{store.root}"
        self.connection = Connection(url)
        self._pending: set[str] = set()
        self._wake = trio.Event()
        self.open_sessions = open_sessions  # this daemon's, each held by a lease
        self._renew_now = True
        self.journals = JournalShipping(url, self.holder, lease_s, summary_of, backlog_bytes)
        self.listener = FleetListener(url, self.holder, publish)
        self.connected = trio.Event()

    async def _call(self, work: Callable[[SharedCatalog], T]) -> T:
        return await self.connection.call(work)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.journals.run)
            nursery.start_soon(self.listener.run)
            task_status.started()
            await self._keep_up()

    async def _keep_up(self) -> None:
        """Publish what was saved, renew the leases; retried with backoff."""
        failures = 0
        while True:
            try:
                await self._call(lambda catalog: catalog.version)
                self.connected.set()
                await self._queue_unpublished()
                renew_at = 0.0
                while True:
                    if self._renew_now or trio.current_time() >= renew_at:
                        self._renew_now = False
                        await self._renew_leases()
                        renew_at = trio.current_time() + self.lease_s / 3
                    await self._publish_pending()
                    with trio.move_on_after(max(renew_at - trio.current_time(), 0)):
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
            try:
                await self._call(functools.partial(
                    _put, record=record, row=row, files=files, holder=self.holder
                ))  # fmt: skip
            except LeaseHeld as held:  # adopted elsewhere: its record is made there
                log.error("not_published", session_id=session_id, reason=str(held))
            else:
                log.info("session_published", session_id=session_id, files=len(files))
            self._pending.discard(session_id)

    # --- leases ---------------------------------------------------------------------

    def wake(self) -> None:
        """Something changed (a session adopted): renew the leases now."""
        self._renew_now = True
        self._wake.set()

    async def _renew_leases(self) -> None:
        held = self.open_sessions()

        def renew(catalog: SharedCatalog) -> dict[str, str]:
            """One statement for the leases held already (10,000 open sessions must not
            cost 10,000 round trips every few seconds); one each for the others."""
            mine = [s for s in held if s.session_id not in self.journals.lost]
            counts = {summary.session_id: summary.command_count for summary in mine}
            renewed = catalog.renew(self.holder, self.lease_s, counts)
            taken = {}
            for summary in mine:
                if summary.session_id in renewed:
                    continue
                holder = catalog.acquire(summary.session_id, self.holder, self.lease_s)
                if holder != self.holder:
                    taken[summary.session_id] = holder
                else:
                    catalog.note_open(open_row(summary))
            return taken

        for session_id, holder in (await self._call(renew)).items():
            self.journals.taken_over(session_id, holder)

    # --- reading --------------------------------------------------------------------

    async def rows(self) -> list[CatalogRow]:
        """The database's sessions (none while it is away)."""
        try:
            return await self.connection.call(lambda catalog: catalog.sessions(), READ_WAIT_S)
        except (psycopg.Error, OSError) as error:
            log.warning("shared_store_unreachable", reason=str(error).strip())
            return []

    async def search(self, text: str) -> list[str]:
        """The database's saved sessions holding `text` (none while it is away)."""
        try:
            return await self.connection.call(lambda catalog: catalog.search(text), READ_WAIT_S)
        except (psycopg.Error, OSError) as error:
            log.warning("shared_store_unreachable", reason=str(error).strip())
            return []

    async def find(self, ref: str) -> CatalogRow | None:
        """The database's session `ref` names (an id, or a name: the newest with it)."""
        try:
            found = await self.connection.call(lambda catalog: catalog.named(ref), READ_WAIT_S)
        except (psycopg.Error, OSError) as error:
            log.warning("shared_store_unreachable", reason=str(error).strip())
            return None
        for row in found:
            if row.session_id == ref or (not is_session_id(ref) and row.name == ref):
                return row
        return None

    async def fetch(self, session_id: str) -> bool:
        """Copy a session saved by another daemon into this data dir (its record last,
        so a record here always has its files). False when the database lacks it."""
        target = self.store.path_for(session_id)
        if target.exists():
            return True

        def download(catalog: SharedCatalog) -> dict[str, bytes] | None:
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
                if name in ("blend", "png"):
                    atomic_write(sessions / f"{session_id}.{name}", data)
            _write_checkpoints(self.store, session_id, files)
            atomic_write(target, files["record.json"])

        await trio.to_thread.run_sync(write)
        await self.store.note_saved(session_id)
        self._pending.discard(session_id)  # it came from there: nothing to send back
        log.info("session_fetched", session_id=session_id, files=len(files))
        return True

    # --- adopting -------------------------------------------------------------------

    async def take_over(self, session_id: str) -> CatalogRow:
        """Take an open session whose daemon is gone: its lease (refused with `conflict`
        while another daemon holds it), then its journal and checkpoints from the
        database into this data dir. Its journal's copy goes on from where it ends."""
        if self.store.exists(session_id) or self.store.journal_exists(session_id):
            raise RemoteProtocolError(
                ErrorCode.CONFLICT, f"session {session_id} is already in this daemon's data dir"
            )

        def take(catalog: SharedCatalog) -> tuple[CatalogRow, list[bytes], dict[str, bytes]]:
            row = catalog.row(session_id)
            if row is None:
                raise RemoteProtocolError(
                    ErrorCode.NOT_FOUND, f"the shared store has no session {session_id}"
                )
            if row.status != "open":
                raise RemoteProtocolError(
                    ErrorCode.CONFLICT,
                    f"session {session_id} is closed: restore it instead "
                    f"(run: blender-session restore {session_id})",
                )
            holder = catalog.acquire(session_id, self.holder, self.lease_s)
            if holder != self.holder:
                raise RemoteProtocolError(
                    ErrorCode.CONFLICT,
                    f"session {session_id} is held by the daemon {holder}, whose lease has "
                    "not expired (a daemon renews its leases while it runs; they last "
                    "--store-lease seconds after): send its commands there",
                )
            catalog.notify(change_note(session_id, self.holder, "adopted"))
            lines = list(catalog.journal(session_id))
            files = {
                name: catalog.file(session_id, name) or b""
                for name in catalog.files(session_id)
                if name.startswith(CHECKPOINT_PREFIX)
            }
            return row, lines, files

        row, lines, files = await self._call(take)
        if not lines:
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND, f"the shared store holds no journal of session {session_id}"
            )
        journal = b"".join(line + b"\n" for line in lines)

        def write() -> None:
            _write_checkpoints(self.store, session_id, files)
            atomic_write(self.store.path_for(session_id, ".journal"), journal)

        await trio.to_thread.run_sync(write)
        self.journals.starts_at(
            session_id, Start(len(journal), len(lines), frozenset(files), known=True)
        )
        log.warning("session_taken", session_id=session_id, lines=len(lines),
                    checkpoints=len(files) // 2, from_holder=row.holder)  # fmt: skip
        return row


def _write_checkpoints(store: SessionStore, session_id: str, files: dict[str, bytes]) -> None:
    """The checkpoint files among `files` (named checkpoints/<file>), into its dir."""
    folder = store.checkpoint_dir(session_id)
    for name, data in files.items():
        if name.startswith(CHECKPOINT_PREFIX) and "/" not in name[len(CHECKPOINT_PREFIX) :]:
            ensure_private_dir(folder)
            atomic_write(folder / name[len(CHECKPOINT_PREFIX) :], data)
