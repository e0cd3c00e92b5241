"""Reading a session back from its journal: at close (the journal holds the history)
and at start-up after a crash (the journal is all there is).

A journal is one JSON line per event. A crash can cut the last line short (the torn
tail: dropped, and cut off the file before anything is appended after it); a line in
the middle that cannot be read costs only itself: the lines around it are kept, the
damage is reported, and a command whose outcome line was lost is `unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..protocol.errors import DECODE_ERRORS, ErrorCode
from .files import read_file
from .records import (
    BlenderRestart,
    CommandRecord,
    JournalData,
    JournalDone,
    JournalLate,
    JournalOpen,
    JournalRestart,
    JournalStart,
    RecordError,
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


@dataclass
class ReplayedJournal:
    session: SessionData  # as opened, with the data set since; its `commands` are empty
    commands: list[CommandRecord]
    states: dict[int, SessionState]  # seq -> the state a command left, where journaled
    restarts: list[BlenderRestart] = field(default_factory=list)
    torn_tail: bytes = b""  # a last line cut short by a crash
    unknown_seqs: list[int] = field(default_factory=list)  # sent, no outcome recorded
    damaged: list[DamagedLine] = field(default_factory=list)


def split_journal(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines of a journal, and the torn tail after the last newline (if any)."""
    body, newline, tail = data.rpartition(b"\n")
    if not newline:
        return [], tail
    return body.split(b"\n"), tail


def replay_journal(path: Path) -> ReplayedJournal:
    """Read a journal back. Raises RecordError when it has no readable opening line
    or is from a newer format (then nothing of it can be trusted)."""
    lines, torn_tail = split_journal(read_file(path))
    if lines:
        check_journal_format(lines[0], f"journal {path.name}")
    opened: JournalOpen | None = None
    started: dict[int, JournalStart] = {}
    done: dict[int, CommandRecord] = {}
    states: dict[int, SessionState] = {}
    data: dict[str, msgspec.Raw] = {}
    restarts: list[BlenderRestart] = []
    damaged: list[DamagedLine] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = decode_journal_line(raw)
        except DECODE_ERRORS as error:
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
            damaged.append(DamagedLine(number, reason, raw))
            continue
        match line:
            case JournalOpen():
                opened = line
                data = dict(line.session.data)
            case JournalData(key=key, value=value):
                if bytes(value) == b"null":
                    data.pop(key, None)
                else:
                    data[key] = value
            case JournalStart():
                started[line.seq] = line
            case JournalDone():
                start = started.get(line.seq)
                if start is not None:
                    done[line.seq] = _command(start, line)
                    if line.state is not None:
                        states[line.seq] = line.state
            case JournalLate():
                earlier = done.get(line.seq)
                if earlier is not None:
                    done[line.seq] = msgspec.structs.replace(
                        earlier,
                        status=line.status,
                        duration_ms=line.duration_ms,
                        result=line.result,
                        error=line.error,
                        late=True,
                    )
            case JournalRestart(restart=restart):
                restarts.append(restart)
    if opened is None:
        detail = f" (line 1: {damaged[0].reason})" if damaged and damaged[0].number == 1 else ""
        raise RecordError(
            ErrorCode.INTERNAL, f"journal {path.name} has no readable opening line{detail}"
        )
    unknown = sorted(seq for seq in started if seq not in done)
    for seq in unknown:
        done[seq] = _command(started[seq], None)
    commands = [done[seq] for seq in sorted(done)]
    session = msgspec.structs.replace(opened.session, data=data)
    return ReplayedJournal(session, commands, states, restarts, torn_tail, unknown, damaged)


def _command(start: JournalStart, line: JournalDone | None) -> CommandRecord:
    if line is None:  # sent, and the daemon died before it could record an outcome
        return CommandRecord(
            seq=start.seq,
            type=start.type,
            params=start.params,
            status="unknown",
            started_at=start.started_at,
            duration_ms=None,
            client_id=start.client_id,
            housekeeping=start.housekeeping,
        )
    return CommandRecord(
        seq=start.seq,
        type=start.type,
        params=start.params,
        status=line.status,
        started_at=start.started_at,
        duration_ms=line.duration_ms,
        client_id=start.client_id,
        result=line.result,
        error=line.error,
        housekeeping=start.housekeeping,
    )
