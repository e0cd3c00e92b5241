"""Where each step of an open session is in its journal, so any page of the history
is read with a few `pread`s instead of the whole file.

A step (`seq`) is a command (its `start` line, then its `done` line and perhaps a
`late` one), an edit, a rewind or a restart (one line each). `JournalSteps` keeps,
per seq, the kind and the offset and length of those lines: 25 bytes a step, 25 MB
for a million. It is filled as the journal is written, or by scanning it after a
crash (store/recovery.py), and read by `read_journal_steps`.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..protocol.errors import DECODE_ERRORS, ErrorCode
from ..protocol.messages import NULL
from .records import (
    CommandRecord,
    EditEntry,
    JournalDone,
    JournalLate,
    JournalRestart,
    JournalStart,
    RecordError,
    RewindEntry,
    decode_journal_line,
)

NO_STEP, COMMAND, EDIT, REWIND, RESTART = 0, 1, 2, 3, 4
KIND_NAMES = {COMMAND: "command", EDIT: "edit", REWIND: "rewind", RESTART: "restart"}


@dataclass(frozen=True, slots=True)
class JournalStepRef:
    seq: int
    kind: int
    line: tuple[int, int]  # (offset, length) of the start line or the entry's line
    done: tuple[int, int] | None  # a command's outcome line
    late: tuple[int, int] | None  # a command's late outcome line


class JournalSteps:
    def __init__(self) -> None:
        self._kinds = bytearray()  # index: seq - 1
        self._line_at = array("q")
        self._line_len = array("l")
        self._done_at = array("q")
        self._done_len = array("l")
        self._late: dict[int, tuple[int, int]] = {}

    @property
    def last_seq(self) -> int:
        return len(self._kinds)

    def _grow(self, seq: int) -> None:
        missing = seq - len(self._kinds)
        if missing > 0:
            self._kinds.extend(bytes(missing))
            self._line_at.extend([-1] * missing)
            self._line_len.extend([0] * missing)
            self._done_at.extend([-1] * missing)
            self._done_len.extend([0] * missing)

    def note_step(self, seq: int, kind: int, offset: int, length: int) -> None:
        """The first line of step `seq` (a command's start, or an entry)."""
        self._grow(seq)
        self._kinds[seq - 1] = kind
        self._line_at[seq - 1], self._line_len[seq - 1] = offset, length

    def note_done(self, seq: int, offset: int, length: int) -> None:
        if 0 < seq <= len(self._kinds):
            self._done_at[seq - 1], self._done_len[seq - 1] = offset, length

    def note_late(self, seq: int, offset: int, length: int) -> None:
        self._late[seq] = (offset, length)

    def forget(self, seq: int) -> None:
        """The step's line never reached the file (a write that failed)."""
        if 0 < seq <= len(self._kinds):
            self._kinds[seq - 1] = NO_STEP
            self._done_at[seq - 1] = -1

    def forget_done(self, seq: int) -> None:
        if 0 < seq <= len(self._kinds):
            self._done_at[seq - 1] = -1
        self._late.pop(seq, None)

    def forget_from(self, offset: int) -> None:
        """Nothing at or after `offset` reached the file (a batch that failed)."""
        for index in range(len(self._kinds) - 1, -1, -1):
            if self._line_at[index] >= offset:
                self._kinds[index] = NO_STEP
            if self._done_at[index] >= offset:
                self._done_at[index] = -1
        self._late = {seq: at for seq, at in self._late.items() if at[0] < offset}

    def seqs_of(self, kind: int) -> list[int]:
        """Every seq of one kind, in order (a C-level scan: fast for a million steps)."""
        found: list[int] = []
        marker = bytes([kind])
        index = self._kinds.find(marker)
        while index != -1:
            found.append(index + 1)
            index = self._kinds.find(marker, index + 1)
        return found

    def kind(self, seq: int) -> int:
        return self._kinds[seq - 1] if 0 < seq <= len(self._kinds) else NO_STEP

    def refs(self, after_seq: int, limit: int) -> list[JournalStepRef]:
        """Up to `limit` steps after `after_seq`, in order (steps never written skipped)."""
        found: list[JournalStepRef] = []
        seq = max(after_seq, 0) + 1
        while seq <= len(self._kinds) and len(found) < limit:
            ref = self.ref(seq)
            if ref is not None:
                found.append(ref)
            seq += 1
        return found

    def ref(self, seq: int) -> JournalStepRef | None:
        index = seq - 1
        if not 0 <= index < len(self._kinds) or self._kinds[index] == NO_STEP:
            return None
        done_at = self._done_at[index]
        return JournalStepRef(
            seq,
            self._kinds[index],
            (self._line_at[index], self._line_len[index]),
            (done_at, self._done_len[index]) if done_at >= 0 else None,
            self._late.get(seq),
        )


HistoryEntry = CommandRecord | EditEntry | RewindEntry | JournalRestart


def read_journal_steps(path: Path, refs: Sequence[JournalStepRef]) -> list[HistoryEntry]:
    """The steps at `refs`, commands merged from their lines as the record has them.
    Raises RecordError for a line that does not read back, OSError."""
    if not refs:
        return []
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return [_read_step(fd, path, ref) for ref in refs]
    finally:
        os.close(fd)


def _read_step(fd: int, path: Path, ref: JournalStepRef) -> HistoryEntry:
    first = _line(fd, path, ref.seq, ref.line)
    if ref.kind != COMMAND:
        if not isinstance(first, EditEntry | RewindEntry | JournalRestart):
            raise _moved(path, ref.seq)
        return first
    if not isinstance(first, JournalStart) or first.seq != ref.seq:
        raise _moved(path, ref.seq)
    done = _line(fd, path, ref.seq, ref.done) if ref.done else None
    late = _line(fd, path, ref.seq, ref.late) if ref.late else None
    return merge_command(
        first,
        done if isinstance(done, JournalDone) else None,
        late if isinstance(late, JournalLate) else None,
    )


def _line(fd: int, path: Path, seq: int, at: tuple[int, int]) -> object:
    offset, length = at
    data = os.pread(fd, length, offset)
    try:
        return decode_journal_line(data)
    except DECODE_ERRORS as error:
        raise RecordError(
            ErrorCode.INTERNAL, f"journal {path.name}: step {seq} does not read back: {error}"
        ) from None


def _moved(path: Path, seq: int) -> RecordError:
    return RecordError(ErrorCode.INTERNAL, f"journal {path.name}: step {seq} is not where noted")


def merge_command(
    start: JournalStart, done: JournalDone | None, late: JournalLate | None = None
) -> CommandRecord:
    """A command as the record has it, from its journal lines. No outcome line: the
    daemon died (or the journal could not take it) before one was written."""
    record = CommandRecord(
        seq=start.seq,
        type=start.type,
        params=start.params,
        status=done.status if done else "unknown",
        started_at=start.started_at,
        duration_ms=done.duration_ms if done else None,
        client_id=start.client_id,
        result=done.result if done else NULL,
        error=done.error if done else None,
        housekeeping=start.housekeeping,
        observation=done.observation if done else False,
    )
    if late is None:
        return record
    return CommandRecord(
        seq=record.seq,
        type=record.type,
        params=record.params,
        status=late.status,
        started_at=record.started_at,
        duration_ms=late.duration_ms,
        client_id=record.client_id,
        result=late.result,
        error=late.error,
        housekeeping=record.housekeeping,
        observation=record.observation,
        late=True,
    )


def kind_of_line(line: object) -> int:
    """The step kind a journal line starts (NO_STEP for lines that are not steps)."""
    match line:
        case JournalStart():
            return COMMAND
        case EditEntry():
            return EDIT
        case RewindEntry():
            return REWIND
        case JournalRestart(restart=restart) if restart.seq is not None:
            return RESTART
    return NO_STEP
