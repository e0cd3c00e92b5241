"""Reading a session back from its journal, streamed: after a crash (the journal is
all there is), and by tools and tests.

A journal is one JSON line per event. A crash can cut the last line short (the torn
tail: dropped, and cut off the file before anything is appended after it); a line in
the middle that cannot be read costs only itself: the lines around it are kept, the
damage is reported, and a command whose outcome line was lost is `unknown`.

`scan_journal` reads the file in chunks and hands each finished step to a visitor, so
a million-command journal is recovered in bounded memory: what it keeps is where each
step is (`JournalSteps`), the commands still waiting for an outcome, and the small
things (free-form data, restarts, checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..protocol.errors import DECODE_ERRORS, ErrorCode
from .files import UnsafePathError
from .history import COMMAND, EDIT, RESTART, REWIND, JournalSteps, merge_command
from .layout import iter_lines
from .records import (
    BlenderRestart,
    CheckpointInfo,
    CommandRecord,
    EditEntry,
    JournalData,
    JournalDone,
    JournalLate,
    JournalOpen,
    JournalRestart,
    JournalStart,
    RecordError,
    RewindEntry,
    SessionData,
    SessionState,
    check_journal_format,
    decode_journal_line,
)


@dataclass(frozen=True, slots=True)
class DamagedLine:
    number: int  # 1-based line number in the journal
    reason: str
    data: bytes


class JournalVisitor:
    """What a scan hands over, step by step, in the journal's order. Override what
    you need."""

    def opened(self, session: SessionData) -> None:
        """The journal's first line: the session as it was opened."""

    def command(self, command: CommandRecord, state: SessionState | None) -> None:
        """A command with its outcome (`state`: what the daemon tracked after an opaque
        one). Commands without an outcome come at the end, `unknown`."""

    def late(self, command: CommandRecord) -> None:
        """A command's real outcome arrived after `unknown`."""

    def edit(self, entry: EditEntry) -> None: ...

    def rewind(self, entry: RewindEntry) -> None: ...


@dataclass
class ScannedJournal:
    session: SessionData  # as opened, with the data set since; its history empty
    steps: JournalSteps
    restarts: list[BlenderRestart] = field(default_factory=list)
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    last_seq: int = 0
    unknown_seqs: list[int] = field(default_factory=list)  # sent, no outcome recorded
    damaged: list[DamagedLine] = field(default_factory=list)
    torn_tail: bytes = b""  # a last line cut short by a crash
    size: int = 0  # bytes of whole lines: where appending goes on


def scan_journal(path: Path, visitor: JournalVisitor | None = None) -> ScannedJournal:
    """Read a journal back, streamed. Raises RecordError when it has no readable
    opening line or is from a newer format (then nothing of it can be trusted), a link
    (UnsafePathError is a RecordError here), OSError."""
    visit = visitor or JournalVisitor()
    scan = _Scan(path, visit)
    try:
        for offset, raw, complete in iter_lines(path):
            if complete:
                scan.line(offset, raw)
            else:
                scan.torn = raw  # cut short by a crash: not a line
    except UnsafePathError as error:
        raise RecordError(ErrorCode.INTERNAL, error.strerror or str(error)) from None
    return scan.finish()


class _Scan:
    def __init__(self, path: Path, visitor: JournalVisitor) -> None:
        self.path = path
        self.visit = visitor
        self.steps = JournalSteps()
        self.number = 0
        self.opened: JournalOpen | None = None
        self.data: dict[str, msgspec.Raw] = {}
        self.restarts: list[BlenderRestart] = []
        self.checkpoints: dict[int, CheckpointInfo] = {}
        self.waiting: dict[int, JournalStart] = {}  # started, no outcome yet
        self.done: dict[int, CommandRecord] = {}  # unknown so far: a late line may come
        self.damaged: list[DamagedLine] = []
        self.last_seq = 0
        self.end = 0  # the end of the last whole line
        self.torn = b""

    def line(self, offset: int, raw: bytes) -> None:
        self.number += 1
        if self.number == 1:
            check_journal_format(raw, f"journal {self.path.name}")
        self.end = offset + len(raw) + 1
        if not raw.strip():
            return
        try:
            line = decode_journal_line(raw)
        except DECODE_ERRORS as error:
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
            self.damaged.append(DamagedLine(self.number, reason, raw))
            return
        self._handle(line, (offset, len(raw) + 1))

    def _handle(self, line: object, at: tuple[int, int]) -> None:
        match line:
            case JournalOpen():
                self.opened = line
                self.data = dict(line.session.data)
                self.visit.opened(line.session)
                self.last_seq = max(self.last_seq, line.session.last_seq)
            case JournalData(key=key, value=value):
                if bytes(value) == b"null":
                    self.data.pop(key, None)
                else:
                    self.data[key] = value
            case JournalStart():
                self.steps.note_step(line.seq, COMMAND, *at)
                self.waiting[line.seq] = line
                self.last_seq = max(self.last_seq, line.seq)
            case JournalDone():
                start = self.waiting.pop(line.seq, None)
                if start is not None:
                    self.steps.note_done(line.seq, *at)
                    command = merge_command(start, line)
                    if command.status == "unknown":
                        self.done[line.seq] = command
                    self.visit.command(command, line.state)
            case JournalLate():
                earlier = self.done.pop(line.seq, None)
                if earlier is not None:
                    self.steps.note_late(line.seq, *at)
                    late = msgspec.structs.replace(
                        earlier, status=line.status, duration_ms=line.duration_ms,
                        result=line.result, error=line.error, late=True,
                    )  # fmt: skip
                    self.visit.late(late)
            case JournalRestart(restart=restart):
                self.restarts.append(restart)
                if restart.seq is not None:
                    self.steps.note_step(restart.seq, RESTART, *at)
                    self.last_seq = max(self.last_seq, restart.seq)
            case EditEntry():
                self.steps.note_step(line.seq, EDIT, *at)
                self.last_seq = max(self.last_seq, line.seq)
                self.visit.edit(line)
            case RewindEntry():
                self.steps.note_step(line.seq, REWIND, *at)
                self.last_seq = max(self.last_seq, line.seq)
                self.visit.rewind(line)
            case CheckpointInfo():
                self.checkpoints[line.seq] = line

    def finish(self) -> ScannedJournal:
        if self.opened is None:
            first = self.damaged[0] if self.damaged and self.damaged[0].number == 1 else None
            detail = f" (line 1: {first.reason})" if first else ""
            raise RecordError(
                ErrorCode.INTERNAL,
                f"journal {self.path.name} has no readable opening line{detail}",
            )
        unknown = sorted(self.waiting)
        for seq in unknown:
            self.visit.command(merge_command(self.waiting[seq], None), None)
        session = msgspec.structs.replace(self.opened.session, data=self.data)
        return ScannedJournal(
            session=session,
            steps=self.steps,
            restarts=self.restarts,
            checkpoints=sorted(self.checkpoints.values(), key=lambda c: c.seq),
            last_seq=self.last_seq,
            unknown_seqs=unknown,
            damaged=self.damaged,
            torn_tail=self.torn,
            size=self.end,
        )


# --- the whole journal in memory (small journals: tools, tests) -------------------------


@dataclass
class ReplayedJournal:
    session: SessionData
    commands: list[CommandRecord]
    states: dict[int, SessionState]  # seq -> the state a command left, where journaled
    restarts: list[BlenderRestart] = field(default_factory=list)
    unknown_seqs: list[int] = field(default_factory=list)
    damaged: list[DamagedLine] = field(default_factory=list)
    torn_tail: bytes = b""
    edits: list[EditEntry] = field(default_factory=list)
    rewinds: list[RewindEntry] = field(default_factory=list)
    checkpoints: list[CheckpointInfo] = field(default_factory=list)


class _Collect(JournalVisitor):
    def __init__(self) -> None:
        self.commands: dict[int, CommandRecord] = {}
        self.states: dict[int, SessionState] = {}
        self.edits: list[EditEntry] = []
        self.rewinds: dict[int, RewindEntry] = {}  # a later line of a seq wins

    def command(self, command: CommandRecord, state: SessionState | None) -> None:
        self.commands[command.seq] = command
        if state is not None:
            self.states[command.seq] = state

    def late(self, command: CommandRecord) -> None:
        self.commands[command.seq] = command

    def edit(self, entry: EditEntry) -> None:
        self.edits.append(entry)

    def rewind(self, entry: RewindEntry) -> None:
        self.rewinds[entry.seq] = entry


def replay_journal(path: Path) -> ReplayedJournal:
    """A journal read back whole (for small ones: every command in memory)."""
    collected = _Collect()
    scanned = scan_journal(path, collected)
    return ReplayedJournal(
        session=scanned.session,
        commands=[collected.commands[seq] for seq in sorted(collected.commands)],
        states=collected.states,
        restarts=scanned.restarts,
        unknown_seqs=scanned.unknown_seqs,
        damaged=scanned.damaged,
        torn_tail=scanned.torn_tail,
        edits=collected.edits,
        rewinds=[collected.rewinds[seq] for seq in sorted(collected.rewinds)],
        checkpoints=scanned.checkpoints,
    )
