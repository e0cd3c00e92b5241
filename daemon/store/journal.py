"""The journal of one open session: its history, one JSON line per event, appended.

Writes are synchronous and in order: `write(line)` is one write() into the page cache,
a few microseconds, which a killed daemon cannot lose (handing each line to a task and
a thread cost ~0.4 ms per command, measured with bench/run.py). Durability against
power loss is separate: with fsync on, `when_durable(callback)` runs the callback once
an fsync that started after the line was written has finished. Callbacks queued while
an fsync runs share the next one (group commit), so a burst of pipelined commands
costs one disk flush per batch. Without fsync, callbacks run at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog
import trio

from .files import JournalFile
from .records import JournalLine, encode_journal_line

log = structlog.get_logger("journal")
Durable = Callable[[OSError | None], None]  # called with the fsync's error, if any


class JournalWriter:
    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._file: JournalFile | None = None
        self._waiting: list[Durable] = []
        self._wakeup = trio.Event()
        self._closing = False
        self._running = False
        self._stopped = trio.Event()

    async def open(self) -> None:
        self._file = await trio.to_thread.run_sync(JournalFile, self.path)

    @property
    def is_open(self) -> bool:
        return self._file is not None and not self._closing

    def write(self, line: JournalLine) -> None:
        """Append `line` now. Raises OSError (disk full, read-only, closed): then nothing
        of it is in the file, and the caller must not acknowledge what it records."""
        if self._file is None or self._closing:
            raise OSError(f"the journal {self.path.name} is closed")
        self._file.append(encode_journal_line(line))

    def when_durable(self, callback: Durable) -> None:
        """Run `callback(error)` once everything written so far is durable."""
        if not self.fsync:
            _call(callback, None)
            return
        self._waiting.append(callback)
        self._wakeup.set()

    async def durable(self) -> None:
        """Wait until everything written so far is durable. Raises OSError."""
        if not self.fsync:
            return
        done = trio.Event()
        failure: list[OSError] = []

        def wake(error: OSError | None) -> None:
            if error is not None:
                failure.append(error)
            done.set()

        self.when_durable(wake)
        await done.wait()
        if failure:
            raise failure[0]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The fsync task (only with fsync): returns after `close()`."""
        self._running = True
        task_status.started()
        try:
            while self.fsync:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                waiting, self._waiting = self._waiting, []
                if waiting:
                    error = await self._sync()
                    for callback in waiting:
                        _call(callback, error)
                if self._closing and not self._waiting:
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
        """Sync what is written (with fsync), stop the fsync task, close the file."""
        self._closing = True
        self._wakeup.set()
        if self._running:
            await self._stopped.wait()
        if self._file is not None:
            file, self._file = self._file, None
            await trio.to_thread.run_sync(file.close)


def _call(callback: Durable, error: OSError | None) -> None:
    """A callback's bug must not stop the fsync task or the caller."""
    try:
        callback(error)
    except Exception:
        log.exception("durable_callback_failed")
