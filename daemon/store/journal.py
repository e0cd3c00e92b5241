"""The journal of one open session, written by one task with group commit.

Callers `await journal.append(line)`; it returns once that line is in the file.
Without fsync the line is written at once (one write() into the page cache, which a
killed daemon cannot lose). With fsync, lines go to a writer task with group commit:
lines that arrive while a write and its fsync are under way go out together in the
next one, so a burst of pipelined commands costs one disk flush per batch.
"""

from __future__ import annotations

from pathlib import Path

import trio

from .files import JournalFile
from .records import JournalLine, encode_journal_line


class _Batch:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.written = trio.Event()
        self.error: OSError | None = None


class JournalWriter:
    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self._fsync = fsync
        self._file: JournalFile | None = None
        self._batch = _Batch()
        self._wakeup = trio.Event()
        self._closing = False
        self._stopped = trio.Event()

    async def open(self) -> None:
        self._file = await trio.to_thread.run_sync(
            lambda: JournalFile(self.path, fsync=self._fsync)
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task: owns every write to the file; returns after `close()`."""
        task_status.started()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                batch, self._batch = self._batch, _Batch()
                if batch.lines:
                    await self._write(batch)
                if self._closing and not self._batch.lines:
                    return
        finally:
            self._stopped.set()

    async def _write(self, batch: _Batch) -> None:
        file = self._file
        assert file is not None
        try:
            # abandon_on_cancel=False (the default): a cancelled write still finishes whole.
            await trio.to_thread.run_sync(file.append, b"".join(batch.lines))
        except OSError as error:
            batch.error = error
        batch.written.set()

    @property
    def fsync(self) -> bool:
        return self._fsync

    def append_now(self, line: JournalLine) -> None:
        """Write `line` at once (one write() into the page cache). Only without fsync:
        with fsync, lines go through `append` and its group commit."""
        if self._fsync:
            raise RuntimeError("append_now() on a journal that fsyncs; use append()")
        if self._closing or self._file is None:
            raise OSError(f"journal {self.path} is not open")
        self._file.append(encode_journal_line(line))

    async def append(self, line: JournalLine) -> None:
        """Queue `line` and wait until it is written. Raises OSError if the write failed
        (disk full, read-only): the caller must not acknowledge what it journals."""
        if not self._fsync:
            # Without fsync an append is one write() into the page cache, a few
            # microseconds; handing it to the writer task and a thread cost ~0.4 ms per
            # command (measured with bench/run.py). So it is written here, in order.
            self.append_now(line)
            return
        if self._closing or self._file is None:
            raise OSError(f"journal {self.path} is not open")
        batch = self._batch
        batch.lines.append(encode_journal_line(line))
        self._wakeup.set()
        await batch.written.wait()
        if batch.error is not None:
            raise batch.error

    async def close(self) -> None:
        """Write what is queued, wait for the writer task to end, close the file."""
        self._closing = True
        self._wakeup.set()
        await self._stopped.wait()
        if self._file is not None:
            file, self._file = self._file, None
            await trio.to_thread.run_sync(file.close)
