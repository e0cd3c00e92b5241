"""The journal of one open session: its history, one JSON line per event, appended.

Lines are written in batches. `write(line)` only encodes it into the journal's pending
buffer; `flush()` hands everything pending to the kernel in one write(), which a
killed daemon cannot lose. What depends on a line being in the file waits for it:
`when_written(callback)` runs the callback once the line is in (or could not be
written), `when_durable(callback)` once it is also fsynced (with fsync on). So a
command is sent to Blender only after its start line is in the file, and a client is
answered only after its outcome line is.

Who writes them: a task that reads from a peer holds the `JournalBatch` while it
handles what one read brought in, and writes every pending line when it is done (a
burst of pipelined commands shares one write). A line written outside a hold wakes its
journal's own task, which writes it at its next turn. Measured on this machine (the
daemon's CPU per command under bench/run.py's load, before and after in one run): two
write() calls per command cost about 6 us of ~30 us at 64 in flight, and waking a
task for every line ~10% at one in flight; one write per hold costs neither.

A write that fails (disk full) is cut back off the file, so the file never holds half
a line: every line of that batch is then not written, and each waiter is told so.

A journal may have a `Replica`: a copy elsewhere (the shared store, PostgreSQL) that
`when_replicated(callback)` waits for too, so a client is answered once its command is
committed there (see sessions/replication.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog
import trio

from .files import JournalFile
from .records import JournalLine, encode_journal_line

log = structlog.get_logger("journal")
Written = Callable[[OSError | None], None]  # called with the write's (or fsync's) error


class Replica(Protocol):
    """A copy of a journal kept elsewhere, which an answer waits for too."""

    def when_committed(self, end: int, callback: Written) -> None:
        """Run `callback(error)` once the journal's bytes up to `end` are in the copy
        (or will not be waited for: the copy is away; `error` when they never will)."""
        ...

    def check_room(self) -> None:
        """Raise a ProtocolError (`storage`) when no more may be written: the copy is
        away and the local journal holds as much as it may ahead of it."""
        ...


class JournalBatch:
    """The journals with lines pending, and who will write them.

    A reader task that handles what one read brought in *holds* the batch (`held()`):
    lines written meanwhile, by whichever session, are written when the hold ends, one
    write() per journal. Outside a hold, a journal's own task wakes to write its lines.
    A hold never spans a checkpoint: the reader leaves it (`released()`) around every
    await, so no line waits on a task that is itself waiting.
    """

    def __init__(self) -> None:
        self._pending: set[JournalWriter] = set()
        self._holds = 0
        self._hold, self._release = _Hold(self), _Release(self)

    def mark(self, journal: JournalWriter) -> bool:
        """Note a journal with lines pending. True when nobody holds the batch: then
        the journal's own task must write them."""
        self._pending.add(journal)
        return not self._holds

    def flush(self) -> None:
        """Write every pending line of every journal (errors go to their waiters)."""
        while self._pending:
            self._pending.pop().flush()

    def held(self) -> _Hold:
        """Held while a reader handles one read: what it writes goes in at the end."""
        return self._hold

    def released(self) -> _Release:
        """Around an await inside a hold: write what is pending, hold again after."""
        return self._release


class _Hold:
    """`with batch.held():` (one object per batch: the hot path allocates nothing)."""

    __slots__ = ("_batch",)

    def __init__(self, batch: JournalBatch) -> None:
        self._batch = batch

    def __enter__(self) -> None:
        self._batch._holds += 1

    def __exit__(self, *exc_info: object) -> None:
        self._batch._holds -= 1
        self._batch.flush()


class _Release:
    __slots__ = ("_batch",)

    def __init__(self, batch: JournalBatch) -> None:
        self._batch = batch

    def __enter__(self) -> None:
        self._batch._holds -= 1
        self._batch.flush()

    def __exit__(self, *exc_info: object) -> None:
        self._batch._holds += 1


class JournalWriter:
    def __init__(
        self, path: Path, *, fsync: bool = False, batch: JournalBatch | None = None
    ) -> None:
        self.path = path
        self.fsync = fsync
        self._batch = batch or JournalBatch()
        self._file: JournalFile | None = None
        self._pending = bytearray()
        self._written_waiters: list[Written] = []  # for what is in _pending
        self._durable_waiters: list[Written] = []  # written; waiting for an fsync
        self._wakeup = trio.Event()
        self._closing = False
        self._running = False
        self._stopped = trio.Event()
        # Told the offset from which written lines did not reach the file (a failed
        # batch): whoever noted where lines are forgets those.
        self.on_lost: Callable[[int], None] = lambda offset: None
        self.replica: Replica | None = None

    async def open(self) -> None:
        self._file = await trio.to_thread.run_sync(JournalFile, self.path)

    @property
    def is_open(self) -> bool:
        return self._file is not None and not self._closing

    def write(self, line: JournalLine) -> tuple[int, int]:
        """Queue `line` for the next flush; returns where it will be in the file
        (offset, length). Raises OSError when the journal is closed."""
        if self._file is None or self._closing:
            raise OSError(f"the journal {self.path.name} is closed")
        if not self._pending and self._batch.mark(self):
            self._wakeup.set()
        data = encode_journal_line(line)
        offset = self._file.size + len(self._pending)
        self._pending += data
        return offset, len(data)

    def flush(self) -> OSError | None:
        """Write what is pending, one write() per round: a waiter may queue more (a
        command refused on the way finishes at once), which goes in the next round.
        Returns (and tells each waiter) the error of a round that could not be
        written; none of that round is then in the file."""
        error: OSError | None = None
        while self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            waiters, self._written_waiters = self._written_waiters, []
            error = None
            try:
                if self._file is None:
                    raise OSError(f"the journal {self.path.name} is closed")
                lost_from = self._file.size
                self._file.append(data)
            except OSError as failure:
                error = failure
                log.error("journal_write_failed", journal=self.path.name, reason=str(failure))
                if self._file is not None:
                    self.on_lost(lost_from)
            for callback in waiters:
                _call(callback, error)
        return error

    def when_written(self, callback: Written) -> None:
        """Run `callback(error)` once everything written so far is in the file: at once
        when nothing is pending."""
        if self._pending:
            self._written_waiters.append(callback)
        else:
            _call(callback, None)

    def when_synced(self, callback: Written) -> None:
        """Run `callback(error)` after an fsync that begins from now (at once without
        fsync): for what is already written."""
        if not self.fsync:
            _call(callback, None)
            return
        self._durable_waiters.append(callback)
        self._wakeup.set()

    def when_durable(self, callback: Written) -> None:
        """Run `callback(error)` once everything written so far is in the file and,
        with fsync on, synced."""

        def written(error: OSError | None) -> None:
            if error is not None:
                callback(error)
            else:
                self.when_synced(callback)

        self.when_written(written)

    @property
    def size(self) -> int:
        """The bytes in the file (written; pending ones not counted)."""
        return 0 if self._file is None else self._file.size

    def when_replicated(self, callback: Written) -> None:
        """Run `callback(error)` once what is written so far is in the replica (at once
        without one)."""
        if self.replica is None or self._file is None:
            _call(callback, None)
        else:
            self.replica.when_committed(self._file.size, callback)

    async def durable(self) -> None:
        """Wait until everything written so far is durable. Raises OSError."""
        done = trio.Event()
        failure: list[OSError] = []

        def wake(error: OSError | None) -> None:
            if error is not None:
                failure.append(error)
            done.set()

        self.when_durable(wake)
        if not self._running:  # no task of its own (a tool, a test): do its work here
            self.flush()
            if self._durable_waiters:
                waiting, self._durable_waiters = self._durable_waiters, []
                error = await self._sync()
                for callback in waiting:
                    _call(callback, error)
        await done.wait()
        if failure:
            raise failure[0]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The journal's own task: flushes what no reader flushed and, with fsync,
        syncs in batches (group commit). Returns after `close()`."""
        self._running = True
        task_status.started()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                error = self.flush()
                waiting, self._durable_waiters = self._durable_waiters, []
                if waiting:
                    if error is None:
                        error = await self._sync()
                    for callback in waiting:
                        _call(callback, error)
                if self._closing and not self._durable_waiters and not self._pending:
                    return
        finally:
            self._stopped.set()

    async def _sync(self) -> OSError | None:
        file = self._file
        if file is None:
            return OSError(f"the journal {self.path.name} is closed")
        try:
            # abandon_on_cancel=False (the default): a cancelled fsync still finishes.
            await trio.to_thread.run_sync(file.sync)
        except OSError as error:
            return error
        return None

    async def close(self) -> None:
        """Write and (with fsync) sync what is pending, stop the task, close the file."""
        self._closing = True
        self._wakeup.set()
        if self._running:
            await self._stopped.wait()
        else:
            self.flush()
        if self._file is not None:
            file, self._file = self._file, None
            await trio.to_thread.run_sync(file.close)


def _call(callback: Written, error: OSError | None) -> None:
    """A callback's bug must not stop the journal's task or the caller."""
    try:
        callback(error)
    except Exception:
        log.exception("journal_callback_failed")
