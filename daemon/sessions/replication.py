"""Each open session's journal copied into the shared store (`--store postgresql://`),
and the answers that wait for it.

Theory of operation:
1. The local journal stays the write-ahead log: every line goes there first (as
   without a shared store). A `JournalCopy` is that journal's `Replica`: a command's
   answer waits, after its outcome line is in the local file, until the database has
   committed the journal up to that line (`when_committed`).
2. One task ships: it wakes when an answer waits (or every SHIP_EVERY_S for lines no
   answer waits for), reads each journal's new whole lines, and appends them, with
   the checkpoints taken since (a checkpoint's .blend goes with its scene file, which
   is written last), in one transaction per session that also renews the lease.
   Commands that finish while a transaction runs share the next one (group commit).
3. The database away (an error, or an answer waiting longer than ACK_WAIT_S): the
   copy is *behind*, waiting answers are released, and clients are answered from the
   local journal as without a shared store, until a copy is more than `backlog_bytes`
   behind: then new commands of that session are refused with `storage` (what ran is
   never refused: it is in the local journal). The task retries with backoff and
   catches up from the byte where the database's copy ends; lines carry their number
   in the journal, so one sent twice (a commit whose answer was lost) is stored once.
4. The lease: a transaction that finds the lease held by another daemon (it adopted
   the session) writes nothing; the copy is lost, waiting answers get `storage`, and
   the session here takes no more commands (`taken_over`).
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import structlog
import trio

from ..protocol import ErrorCode, StorageError
from ..protocol.ops import SessionSummary
from ..store import JournalWriter, Written
from ..store.files import read_file
from ..store.shared_catalog import CatalogRow, LeaseHeld, SharedCatalog
from ..store.store import CHECKPOINTS_SUFFIX
from .connection import Connection

log = structlog.get_logger("replication")

SHIP_EVERY_S = 0.5  # lines no answer waits for (edits, checkpoints) go at least this often
ACK_WAIT_S = 3.0  # an answer waits no longer for the database: then it is away
RETRY_MAX_S = 5.0
# Journal read per session and pass, at most: twice the largest line there can be (a
# message is at most 16 MiB), so a pass always ends on a whole line.
MAX_SHIP_BYTES = 32 * 1024 * 1024
DEFAULT_BACKLOG_BYTES = 64 * 1024 * 1024


@dataclass
class _Batch:
    """What one pass sends of one journal."""

    end: int  # the journal's byte the batch ends at
    first: int  # the number of its first line
    data: bytes  # whole lines
    count: int  # how many
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Start:
    """Where a journal's copy starts (an adopted session's: all of it is there)."""

    offset: int = 0
    lines: int = 0
    shipped: frozenset[str] = frozenset()
    known: bool = False  # else asked of the database first (a journal recovered here)


class JournalCopy:
    """One open session's journal in the database (a store.journal.Replica)."""

    def __init__(
        self, shipping: JournalShipping, session_id: str, journal: JournalWriter, start: Start
    ) -> None:
        self.shipping = shipping
        self.session_id = session_id
        self.journal = journal
        self.offset = start.offset  # the journal's bytes committed in the database
        self.lines = start.lines  # and its lines
        self.shipped = set(start.shipped)  # checkpoint files already there
        self.noted = False  # its catalog row written
        self.known = start.known  # where the database's copy ends
        self.lost: str | None = None  # another daemon holds it
        self._waiting: deque[tuple[int, float, Written]] = deque()

    # --- Replica ----------------------------------------------------------------------

    def when_committed(self, end: int, callback: Written) -> None:
        if end <= self.offset:
            _call(callback, None)
        elif self.lost is not None:
            _call(callback, OSError(self.lost))
        elif self.shipping.behind:
            _call(callback, None)  # answered from the local journal, as without a store
        else:
            self._waiting.append((end, trio.current_time(), callback))
            self.shipping.wake()

    def check_room(self) -> None:
        behind = self.journal.size - self.offset
        if self.shipping.behind and behind > self.shipping.backlog_bytes:
            raise StorageError(
                ErrorCode.STORAGE,
                f"the shared store is unreachable and session {self.session_id}'s journal "
                f"here is {behind} bytes ahead of it (at most {self.shipping.backlog_bytes}): "
                "no new commands until it catches up; retry later (the command was not sent "
                "to Blender)",
            )

    # --- the shipping task's side -------------------------------------------------------

    @property
    def waiting_since(self) -> float | None:
        return self._waiting[0][1] if self._waiting else None

    def committed(self, batch: _Batch) -> None:
        self.offset = batch.end
        self.lines += batch.count
        self.shipped.update(batch.files)
        while self._waiting and self._waiting[0][0] <= self.offset:
            _call(self._waiting.popleft()[2], None)

    def release(self, error: OSError | None = None) -> None:
        """Answer everyone waiting: the copy is away (None), or lost (the error)."""
        while self._waiting:
            _call(self._waiting.popleft()[2], error)


class JournalShipping:
    def __init__(
        self,
        url: str,
        holder: str,
        lease_s: float,
        summary_of: Callable[[str], SessionSummary | None],
        backlog_bytes: int = DEFAULT_BACKLOG_BYTES,
    ) -> None:
        self.connection = Connection(url)  # its own: a publish never delays an answer
        self.holder = holder
        self.lease_s = lease_s
        self.summary_of = summary_of  # an open session's summary (None: not open here)
        self.backlog_bytes = backlog_bytes
        self.copies: dict[str, JournalCopy] = {}
        self.behind = False  # the database is away: answers do not wait for it
        self.lost: set[str] = set()  # sessions another daemon took over
        self._starts: dict[str, Start] = {}
        self._wakeup = trio.Event()
        # Told (session id, why) when another daemon took a session over.
        self.on_taken_over: Callable[[str, str], None] = lambda session_id, why: None

    def attach(self, session_id: str, journal: JournalWriter) -> None:
        """Copy an open session's journal from now on (where a `starts_at` says)."""
        start = self._starts.pop(session_id, Start())
        journal.replica = self.copies[session_id] = JournalCopy(self, session_id, journal, start)

    def starts_at(self, session_id: str, start: Start) -> None:
        """The database already holds this session's journal up to `start` (adopted)."""
        self._starts[session_id] = start

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_waits)
            failures = 0
            while True:
                try:
                    caught_up = await self._pass()
                except (psycopg.Error, OSError) as error:
                    failures += 1
                    self._fall_behind(str(error).strip())
                    await trio.sleep(min(RETRY_MAX_S, 0.25 * 2 ** min(failures, 10)))
                    continue
                failures = 0
                if self.behind and caught_up:
                    self.behind = False
                    log.warning("shared_store_caught_up")
                if self.behind:
                    continue  # more to catch up on
                with trio.move_on_after(SHIP_EVERY_S):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()

    async def _watch_waits(self) -> None:
        """An answer waiting longer than ACK_WAIT_S: the database counts as away."""
        while True:
            await trio.sleep(ACK_WAIT_S / 4)
            now = trio.current_time()
            for copy in list(self.copies.values()):
                since = copy.waiting_since
                if since is not None and now - since > ACK_WAIT_S:
                    self._fall_behind(f"no commit within {ACK_WAIT_S} s")
                    break

    def _fall_behind(self, reason: str) -> None:
        if not self.behind:
            log.warning("shared_store_behind", reason=reason,
                        answering_from="the local journal")  # fmt: skip
        self.behind = True
        for copy in self.copies.values():
            copy.release()

    async def _pass(self) -> bool:
        """Ship every open journal's new lines. True when all are in the database."""
        caught_up = True
        for session_id, copy in list(self.copies.items()):
            if not copy.journal.is_open or copy.lost is not None:
                del self.copies[session_id]  # closed (its record goes as a whole)
                copy.release()
                continue
            if copy.known and copy.journal.size <= copy.offset:
                continue  # nothing new: an idle session costs a comparison
            summary = self.summary_of(session_id)
            if summary is None:  # closing: its record goes as a whole
                continue
            if not copy.known:  # a journal recovered here: the database may have much
                start = await self.connection.call(
                    functools.partial(_resume_point, path=copy.journal.path)
                )
                copy.offset, copy.lines = start.offset, start.lines
                copy.shipped, copy.known = set(start.shipped), True
                if start.lines:
                    log.info("journal_copy_resumed", session_id=session_id, lines=start.lines)
            row = None if copy.noted else open_row(summary)
            try:
                batch = await self.connection.call(functools.partial(
                    _ship, path=copy.journal.path, offset=copy.offset, lines=copy.lines,
                    shipped=frozenset(copy.shipped), holder=self.holder, ttl_s=self.lease_s,
                    row=row,
                ))  # fmt: skip
            except LeaseHeld as held:
                self.taken_over(session_id, held.holder)
                continue
            if batch is None:
                continue
            copy.noted = True
            copy.committed(batch)
            caught_up = caught_up and copy.offset >= copy.journal.size
        return caught_up

    def taken_over(self, session_id: str, holder: str) -> None:
        """Another daemon holds the session's lease: this one writes it no more."""
        why = (
            f"the daemon {holder} adopted it (it holds its lease in the shared store); "
            "commands for it go there now"
        )
        self.lost.add(session_id)
        copy = self.copies.pop(session_id, None)
        if copy is not None:
            copy.lost = f"session {session_id}: {why}"
            copy.release(OSError(copy.lost))
        log.error("session_taken_over", session_id=session_id, holder=holder)
        self.on_taken_over(session_id, why)


def open_row(summary: SessionSummary) -> CatalogRow:
    """The catalog's row of a session open here."""
    return CatalogRow(
        session_id=summary.session_id, name=summary.name, status="open",
        created_at=summary.created_at, closed_at=None, command_count=summary.command_count,
        blender_version=summary.blender_version, holder=None,
    )  # fmt: skip


def _ship(
    catalog: SharedCatalog,
    *,
    path: Path,
    offset: int,
    lines: int,
    shipped: frozenset[str],
    holder: str,
    ttl_s: float,
    row: CatalogRow | None,
) -> _Batch | None:
    """Read what is new in a journal and append it (in the connection's thread: one
    hop per session and pass). None when there was nothing."""
    batch = _gather(path, offset, lines, shipped)
    if batch is not None:
        catalog.append_journal(path.stem, batch.first, batch.data, holder, ttl_s, batch.files, row)
    return batch


def _resume_point(catalog: SharedCatalog, *, path: Path) -> Start:
    """Where the database's copy of a journal ends: its lines there, found in the
    file by counting newlines (blocking: run in a thread), and its files there."""
    session_id = path.stem
    lines = catalog.journal_length(session_id)
    offset = counted = 0
    if not path.exists():  # closed meanwhile: nothing more to send
        return Start(known=True)
    with path.open("rb") as file:
        while counted < lines:
            chunk = file.read(1024 * 1024)
            if not chunk:
                break
            found = chunk.count(b"\n")
            if counted + found < lines:
                counted += found
                offset += len(chunk)
                continue
            end = -1
            for _ in range(lines - counted):
                end = chunk.index(b"\n", end + 1)
            offset += end + 1
            counted = lines
    return Start(offset, counted, frozenset(catalog.files(session_id)), known=True)


def _gather(path: Path, offset: int, lines: int, shipped: frozenset[str]) -> _Batch | None:
    """A journal's whole lines from `offset` on, numbered on from `lines`, and the
    checkpoints kept since (blocking: run in a thread). None when there is nothing."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read(MAX_SHIP_BYTES)
    except FileNotFoundError:
        return None
    end = data.rfind(b"\n") + 1
    whole = data[:end]
    files = _new_checkpoints(path.with_suffix(CHECKPOINTS_SUFFIX), shipped)
    if not whole and not files:
        return None
    return _Batch(offset + end, lines + 1, whole, whole.count(b"\n"), files)


def _new_checkpoints(directory: Path, shipped: frozenset[str]) -> dict[str, bytes]:
    """Checkpoints kept since: a .blend with its scene file (written after the .blend
    was synced, so a pair is whole)."""
    try:
        names = set(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    files: dict[str, bytes] = {}
    for name in sorted(names):
        if not name.endswith(".state.json") or f"checkpoints/{name}" in shipped:
            continue
        blend = name.removesuffix(".state.json") + ".blend"
        if blend not in names:
            continue
        try:
            for part in (blend, name):
                files[f"checkpoints/{part}"] = read_file(directory / part)
        except OSError:  # thinned out meanwhile
            files.pop(f"checkpoints/{blend}", None)
    return files


def _call(callback: Written, error: OSError | None) -> None:
    try:
        callback(error)
    except Exception:
        log.exception("replica_callback_failed")
