"""Rebuilding a session from its journal: at close (the journal holds the command
history) and at start-up after a crash (the journal is all there is)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..protocol.errors import DECODE_ERRORS, ErrorCode
from .files import read_lines
from .records import (
    CommandRecord,
    JournalData,
    JournalDone,
    JournalOpen,
    JournalStart,
    RecordError,
    SessionData,
    SessionState,
    check_journal_format,
    decode_journal_line,
)


@dataclass
class ReplayedJournal:
    session: SessionData  # as opened, with the data set since; its `commands` are empty
    commands: list[CommandRecord]
    states: dict[int, SessionState]  # seq -> the state a command left, where journaled
    torn_tail: bytes = b""  # a last line cut short by a crash, dropped
    unknown_seqs: list[int] = field(default_factory=list)  # sent, outcome never recorded


def replay_journal(path: Path) -> ReplayedJournal:
    """Read a journal back. Raises RecordError if it is damaged beyond its last line."""
    lines, torn_tail = read_lines(path)
    if lines:
        check_journal_format(lines[0], f"journal {path.name}")
    opened: JournalOpen | None = None
    started: dict[int, JournalStart] = {}
    commands: list[CommandRecord] = []
    states: dict[int, SessionState] = {}
    data: dict[str, msgspec.Raw] = {}
    for number, raw in enumerate(lines, start=1):
        try:
            line = decode_journal_line(raw)
        except DECODE_ERRORS as error:
            raise RecordError(
                ErrorCode.INTERNAL, f"journal {path.name} line {number} is damaged: {error}"
            ) from None
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
                start = started.pop(line.seq, None)
                if start is None:
                    continue  # a completion without its start: nothing to attach it to
                commands.append(
                    CommandRecord(
                        seq=line.seq,
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
                )
                if line.state is not None:
                    states[line.seq] = line.state
    if opened is None:
        raise RecordError(ErrorCode.INTERNAL, f"journal {path.name} has no opening line")
    unknown = sorted(started)
    for seq in unknown:
        start = started[seq]
        commands.append(
            CommandRecord(
                seq=seq,
                type=start.type,
                params=start.params,
                status="unknown",
                started_at=start.started_at,
                duration_ms=None,
                client_id=start.client_id,
            )
        )
    commands.sort(key=lambda command: command.seq)
    session = msgspec.structs.replace(opened.session, data=data)
    return ReplayedJournal(session, commands, states, torn_tail, unknown)
