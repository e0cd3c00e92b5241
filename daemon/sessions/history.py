"""A session's history, read a page at a time, off the event loop: from the journal of
an open session (through its step offsets) or from a closed session's record (through
its step index); and the record of a closing session, written from its journal in a
thread, streamed, in bounded memory.

A page is cut at `limit` steps and at about `PAGE_BYTES` of entries (whichever comes
first), so a reply stays a few MiB whatever the session holds; the client asks again
from `next_after_seq` (see docs/protocol-notes.md: paged, not streamed, because a
page is a plain request and reply any client can make, and a client that stops
reading holds nothing in the daemon).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
import trio

from ..protocol.limits import MAX_FRAME_BYTES
from ..store import (
    BlenderRestart,
    CommandRecord,
    EditEntry,
    JournalRestart,
    RewindEntry,
    SessionData,
    SessionStore,
)
from ..store.history import (
    COMMAND,
    EDIT,
    REWIND,
    JournalStepRef,
    JournalSteps,
    read_journal_steps,
)
from ..store.layout import COMMAND as RECORD_COMMAND
from ..store.layout import TIMELINE as RECORD_TIMELINE
from ..store.layout import RecordWriter
from .session import Session

PAGE_BYTES = MAX_FRAME_BYTES // 4
# Steps read per round while a closing session's record is written.
CLOSE_CHUNK_STEPS = 2048

Step = CommandRecord | EditEntry | RewindEntry | BlenderRestart


@dataclass(frozen=True, slots=True)
class HistoryPage:
    steps: list[Step]
    next_after_seq: int | None  # None: this page reached the last step
    last_seq: int


def cut(refs: list[JournalStepRef], max_bytes: int) -> list[JournalStepRef]:
    """The refs that fit in a page of `max_bytes` (at least one)."""
    total = 0
    for index, ref in enumerate(refs):
        total += ref.line[1] + (ref.done[1] if ref.done else 0) + (ref.late[1] if ref.late else 0)
        if total > max_bytes and index > 0:
            return refs[:index]
    return refs


async def open_page(session: Session, after_seq: int, limit: int) -> HistoryPage:
    """A page of an open session's history, from its journal."""
    session.journal.flush()  # what is pending goes into the file (or to unjournaled)
    refs = cut(session.steps.refs(after_seq, limit), PAGE_BYTES)
    unjournaled = dict(session.unjournaled)
    path = session.journal.path
    entries = await trio.to_thread.run_sync(read_journal_steps, path, refs)
    steps: list[Step] = []
    for entry in entries:
        if isinstance(entry, CommandRecord):
            steps.append(unjournaled.get(entry.seq, entry))
        elif isinstance(entry, JournalRestart):
            steps.append(entry.restart)
        else:
            steps.append(entry)
    last = session.last_seq
    next_after = steps[-1].seq if steps and _seq(steps[-1]) < last else None
    if not steps and after_seq < last:  # only steps that never reached the file left
        next_after = None
    return HistoryPage(steps, next_after, last)


async def closed_page(
    store: SessionStore, head: SessionData, after_seq: int, limit: int
) -> HistoryPage:
    """A page of a closed session's history, from its record."""
    entries = await store.history(head.session_id, after_seq, limit, PAGE_BYTES)
    restarts = {r.seq: r for r in head.restarts if r.seq is not None}
    steps: list[Step] = list(entries)
    if restarts:  # resumed restarts are steps too, kept in the record's head
        upper = _seq(steps[-1]) if steps and len(steps) >= limit else None
        steps += [
            r for seq, r in restarts.items() if seq > after_seq and (upper is None or seq < upper)
        ]
        steps.sort(key=_seq)
        steps = steps[:limit]
    last = head.last_seq or (max((_seq(s) for s in steps), default=0) if steps else after_seq)
    if not head.last_seq:
        last = max(last, await store.last_step(head.session_id))
    next_after = _seq(steps[-1]) if steps and _seq(steps[-1]) < last else None
    return HistoryPage(steps, next_after, last)


def _seq(step: Step) -> int:
    if isinstance(step, BlenderRestart):
        assert step.seq is not None
        return step.seq
    return step.seq


def split(steps: list[Step]) -> tuple[list[CommandRecord], list[EditEntry | RewindEntry]]:
    """A page as the record has it: commands, and timeline entries (restarts are in
    the record's head)."""
    commands = [s for s in steps if isinstance(s, CommandRecord)]
    timeline = [s for s in steps if isinstance(s, EditEntry | RewindEntry)]
    return commands, timeline


# --- the record of a closing session ---------------------------------------------------


def write_closed_record(
    store: SessionStore,
    head: SessionData,
    path: Path,
    steps: JournalSteps,
    unjournaled: dict[int, CommandRecord],
) -> None:
    """Write a session's record from its journal: its timeline entries, then its
    commands, a chunk of steps at a time. Blocking: run it in a thread."""
    writer: RecordWriter = store.start_record(head)
    try:
        timeline = sorted(steps.seqs_of(EDIT) + steps.seqs_of(REWIND))
        for start in range(0, len(timeline), CLOSE_CHUNK_STEPS):
            chunk = [steps.ref(seq) for seq in timeline[start : start + CLOSE_CHUNK_STEPS]]
            for entry in read_journal_steps(path, [ref for ref in chunk if ref is not None]):
                assert isinstance(entry, EditEntry | RewindEntry)
                writer.add(RECORD_TIMELINE, entry.seq, _encoder.encode(entry))
        after = 0
        while refs := steps.refs(after, CLOSE_CHUNK_STEPS):
            after = refs[-1].seq
            commands = [ref for ref in refs if ref.kind == COMMAND]
            for entry in read_journal_steps(path, commands):
                assert isinstance(entry, CommandRecord)
                entry = unjournaled.get(entry.seq, entry)
                writer.add(RECORD_COMMAND, entry.seq, _encoder.encode(entry))
        for seq in sorted(seq for seq in unjournaled if steps.kind(seq) != COMMAND):
            writer.add(RECORD_COMMAND, seq, _encoder.encode(unjournaled[seq]))  # start line lost
        writer.finish()
    except BaseException:
        writer.abort()
        raise


_encoder = msgspec.json.Encoder()
