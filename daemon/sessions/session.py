"""One open session: its identity, its tracked scene, and the journal that holds its
history. It records its own commands, in two synchronous steps.

Theory of operation:
- `start_command` gives the command its `seq` and writes the start line to the
  journal *before* the command leaves for Blender. If the line cannot be written
  (disk full), nothing is counted and the command must not be sent.
- `finish_command` writes the outcome line (`success`, `error`, or `unknown` when no
  answer came) and updates the tracked scene. It never raises: an outcome the journal
  cannot take stays in memory (`unjournaled`) and the record gets it at close.
- A command is in flight from `start_command` until `release` (which
  `finish_command` does, and which is safe to call again); `close` waits until none
  is. The caller replies to its client only after `finish_command`.
- A late answer (after `unknown`) is journaled by `record_late` as the real outcome.
No sockets, no files of its own: the journal is given, the link is a Protocol.

Long (about 500 lines) because a session's memory and every way it changes (commands,
late answers, edits, rewinds, restarts, checkpoints, data) stay together, each beside
the journal line that records it, so the two cannot drift apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import msgspec
import structlog
import trio

from ..protocol import DECODE_ERRORS, ErrorCode, ProtocolError, RemoteProtocolError, check_json
from ..protocol.commands import OPAQUE_COMMANDS
from ..protocol.messages import ErrorBody
from ..protocol.ops import SessionSummary
from ..store import (
    BlenderInfo,
    BlenderRestart,
    CheckpointInfo,
    CommandRecord,
    CommandStatus,
    EditEntry,
    JournalData,
    JournalDone,
    JournalLate,
    JournalRestart,
    JournalStart,
    JournalWriter,
    LastResult,
    RewindEntry,
    SessionData,
    SessionState,
    SnapshotInfo,
    Written,
)
from ..store.history import COMMAND, EDIT, RESTART, REWIND, JournalSteps
from .blender import BlenderLink
from .tracking import SceneTracker

log = structlog.get_logger("sessions")


@dataclass(slots=True, eq=False)
class CommandStart:
    seq: int
    type: str
    params: msgspec.Raw
    client_id: str | None
    started_at: float  # wall clock, for the record
    began: float  # trio clock, for the duration
    housekeeping: bool = False
    # A blender-mcp observation script: the scene is read before and after it.
    observing: bool = False


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What became of a command: Blender's result, its error, or `unknown`."""

    status: CommandStatus
    result: bytes = b"null"
    error: ProtocolError | None = None  # what the client is told, unless a success
    scene_info: bytes | None = None  # the scene read back after an opaque command
    scene_before: bytes | None = None  # and before it, for an observation script


@dataclass(frozen=True, slots=True)
class Finished:
    start: CommandStart
    line: JournalDone  # its outcome, as journaled
    journal_error: OSError | None  # the journal was closed: the line was not queued

    @property
    def status(self) -> CommandStatus:
        return self.line.status

    @property
    def duration_ms(self) -> float:
        return self.line.duration_ms


class Session:
    def __init__(
        self,
        data: SessionData,
        link: BlenderLink,
        journal: JournalWriter,
        *,
        next_seq: int = 1,
        steps: JournalSteps | None = None,
    ) -> None:
        self.session_id = data.session_id
        self.name = data.name
        self.created_at = data.created_at
        self.last_activity = data.last_activity
        self.restored_from = data.restored_from
        self.command_count = data.command_count
        self.data = dict(data.data)
        self.snapshot: SnapshotInfo | None = data.snapshot
        self.instance_id = data.blender.instance_id
        self.restarts = list(data.restarts)
        self.link = link
        self.journal = journal
        self.next_seq = next_seq
        # Where each step is in the journal (store/history.py); lines a failed write
        # lost are forgotten there.
        self.steps = steps or JournalSteps()
        journal.on_lost = self.steps.forget_from
        self.checkpoints: dict[int, CheckpointInfo] = {c.seq: c for c in data.checkpoints}
        self.tracker = SceneTracker(data.state)
        self.last_command = data.state.last_command
        self.last_result = data.state.last_result
        self.unjournaled: dict[int, CommandRecord] = {}
        self.closing = False
        # Why commands are refused for now, when they are (a rewind, a resume).
        self.busy: str | None = None
        # A rewind journaled as started whose end is not (the daemon died in it): the
        # scene is somewhere between; finished once its Blender is back (travel.py).
        self.interrupted_rewind: RewindEntry | None = None
        # Set when another daemon adopted this session (the shared store's lease went to
        # it): why this daemon takes no more commands for it.
        self.taken_over: str | None = None
        self.opened_at = trio.current_time()
        self.checkpoint_ms = 0.0  # Blender's time spent on this session's checkpoints
        self.last_active_at = trio.current_time()  # for the idle TTL (trio clock)
        self._in_flight: set[int] = set()
        self._idle = trio.Event()
        self._idle.set()

    # --- state ----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def detached(self) -> str | None:
        """Why this session takes no more commands, or None."""
        if self.taken_over is not None:
            return self.taken_over
        if not self.restarts or self.restarts[-1].resumed:
            return None
        restart = self.restarts[-1]
        return (
            f"Blender at {self.link.endpoint} restarted after step {restart.after_seq} "
            f"(instance {restart.previous_instance[:8]} -> {restart.instance[:8]}); its "
            "scene is not this session's any more"
        )

    def check_accepting(self) -> None:
        """Raise conflict when commands are refused: closing, or Blender restarted."""
        if self.closing:
            raise RemoteProtocolError(ErrorCode.CONFLICT, f"session {self.session_id} is closing")
        if self.busy:
            raise RemoteProtocolError(
                ErrorCode.BUSY, f"session {self.session_id} is busy: {self.busy}; retry when done"
            )
        if self.detached:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT,
                f"session {self.session_id}: {self.detached}; close it to save what was "
                f"recorded, then restore it (run: blender-session close {self.session_id})",
            )

    async def wait_idle(self) -> None:
        while self._in_flight:
            await self._idle.wait()

    # --- commands -------------------------------------------------------------------

    def start_command(
        self,
        type: str,
        params: msgspec.Raw,
        client_id: str | None,
        *,
        housekeeping: bool = False,
    ) -> CommandStart:
        """Journal a command's start and count it in flight. Raises OSError when the
        journal cannot take the line (then nothing is counted: do not send it)."""
        seq, started_at, now = self.next_seq, time.time(), trio.current_time()
        at = self.journal.write(
            JournalStart(
                seq=seq,
                type=type,
                params=params,
                started_at=started_at,
                client_id=client_id,
                housekeeping=housekeeping,
            )
        )
        self.steps.note_step(seq, COMMAND, *at)
        self.next_seq = seq + 1
        if not self._in_flight:
            self._idle = trio.Event()
        self._in_flight.add(seq)
        self.last_active_at = now
        return CommandStart(seq, type, params, client_id, started_at, now, housekeeping)

    def finish_command(self, start: CommandStart, outcome: CommandOutcome) -> Finished:
        """Journal the outcome, track the scene, count the command done. Never raises
        for the journal: see `Finished.journal_error`."""
        try:
            now = trio.current_time()
            self.last_active_at = now
            duration_ms = round((now - start.began) * 1000, 3)
            status = outcome.status
            if status == "success":
                self._track(start, outcome)
            error = _error_body(outcome.error)
            self._count(start, status, error)
            opaque = status == "success" and start.type in OPAQUE_COMMANDS
            result = msgspec.Raw(outcome.result)
            line = JournalDone(
                seq=start.seq,
                status=status,
                duration_ms=duration_ms,
                result=result,
                error=error,
                state=self.tracker.journal_state() if opaque else None,
                observation=opaque
                and start.observing
                and outcome.scene_before is not None
                and outcome.scene_before == outcome.scene_info,
            )
            try:
                at = self.journal.write(line)
            except OSError as journal_error:
                return Finished(start, line, journal_error)
            self.steps.note_done(start.seq, *at)
            return Finished(start, line, None)
        finally:
            self.release(start)

    def keep_unjournaled(self, finished: Finished) -> None:
        """The journal could not take this outcome: the record gets it at close."""
        self.unjournaled[finished.start.seq] = _record(finished.start, finished.line)
        self.steps.forget_done(finished.start.seq)

    def not_started(self, start: CommandStart) -> None:
        """The start line could not be written: the command was never sent."""
        self.steps.forget(start.seq)
        self.release(start)

    def release(self, start: CommandStart) -> None:
        """The command is no longer in flight. Idempotent."""
        in_flight = self._in_flight
        in_flight.discard(start.seq)
        if not in_flight:
            self._idle.set()

    def record_late(self, start: CommandStart, outcome: CommandOutcome, written: Written) -> None:
        """An `unknown` command's real outcome arrived: journal it. `written(error)` is
        told whether the journal took it; if not, the outcome is kept for the record at
        close."""
        status: Literal["success", "error"] = "success" if outcome.status == "success" else "error"
        duration_ms = round((trio.current_time() - start.began) * 1000, 3)
        line = JournalLate(
            seq=start.seq,
            status=status,
            duration_ms=duration_ms,
            result=msgspec.Raw(outcome.result),
            error=_error_body(outcome.error),
        )
        if status == "success":
            self._track(start, outcome)

        def taken(error: OSError | None) -> None:
            if error is not None:
                self.unjournaled[start.seq] = _record(start, line)
            written(error)

        try:
            at = self.journal.write(line)
        except OSError as error:
            taken(error)
            return
        self.steps.note_late(start.seq, *at)
        self.journal.when_written(taken)

    def record_housekeeping(
        self, type: str, params: msgspec.Raw, result: bytes, client_id: str | None
    ) -> Finished:
        """A probe the proxy answered itself, kept in the history, tagged. Raises OSError."""
        start = self.start_command(type, params, client_id, housekeeping=True)
        return self.finish_command(start, CommandOutcome(status="success", result=result))

    def _track(self, start: CommandStart, outcome: CommandOutcome) -> None:
        try:
            if outcome.scene_info is not None:
                self.tracker.track_scene_info(outcome.scene_info)
            else:
                self.tracker.track(start.type, start.params, outcome.result)
        except DECODE_ERRORS as error:
            log.warning(
                "state_tracking_failed",
                session_id=self.session_id,
                type=start.type,
                reason=str(error),
            )

    def count_recovered(self, record: CommandRecord) -> None:
        """Count a command read back from the journal (recovery after a crash)."""
        self.last_activity = time.time()
        if not record.housekeeping:
            self._count_command(record.type, record.status, record.error)

    def _count(self, start: CommandStart, status: CommandStatus, error: ErrorBody | None) -> None:
        self.last_activity = time.time()
        if not start.housekeeping:
            self._count_command(start.type, status, error)

    def _count_command(self, type: str, status: CommandStatus, error: ErrorBody | None) -> None:
        self.command_count += 1
        self.last_command = type
        self.last_result = (
            LastResult(status=status)
            if error is None
            else LastResult(status=status, code=error.code, message=error.message)
        )

    async def read_scene(self) -> bytes:
        """A fresh `get_state` of the session's scene, tracked. Raises
        RemoteProtocolError (Blender's error, unavailable, unstorable) or a decode error."""
        scene = await self.link.request("get_state")
        check_json(scene, "Blender's scene")
        self.tracker.track_state(scene)
        return scene

    # --- data and restarts ----------------------------------------------------------

    def set_data(self, key: str, value: msgspec.Raw) -> None:
        """Journal a free-form value (`null` removes the key). Raises OSError."""
        self.journal.write(JournalData(key=key, value=value))
        if bytes(value) == b"null":
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def mark_restarted(self, instance: str, blender_version: str) -> BlenderRestart:
        """A different Blender answers where this session's was, and its scene is not
        brought back: note it, for good (the session refuses commands). Raises OSError
        when the journal cannot take it (it is noted in memory all the same)."""
        restart = BlenderRestart(
            at=time.time(),
            after_seq=self.last_seq,
            previous_instance=self.instance_id,
            instance=instance,
            blender_version=blender_version,
        )
        self.restarts.append(restart)
        self.journal.write(JournalRestart(restart=restart))
        return restart

    def resumed_in(self, instance: str, blender_version: str, error: str | None) -> int:
        """A different Blender answered and the session's scene was brought back into
        it (or that failed: `error`, and then the session is detached): a `restart`
        step. Returns its seq. Raises OSError (the journal is closed)."""
        seq = self.next_seq
        restart = BlenderRestart(
            at=time.time(),
            after_seq=seq - 1,
            previous_instance=self.instance_id,
            instance=instance,
            blender_version=blender_version,
            seq=seq,
            resumed=error is None,
            error=error,
        )
        at = self.journal.write(JournalRestart(restart=restart))
        self.next_seq = seq + 1
        self.steps.note_step(seq, RESTART, *at)
        self.restarts.append(restart)
        if error is None:
            self.instance_id = instance
        return seq

    # --- steps that are not commands --------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The last step taken (0: none yet)."""
        return self.next_seq - 1

    def add_edit(self, source: str, objects: list[msgspec.Raw], removed: list[str]) -> EditEntry:
        """A change made beside the daemon, as a step. Raises OSError (journal closed)."""
        entry = EditEntry(
            seq=self.next_seq, at=time.time(), source=source, objects=objects, removed=removed
        )
        self._add_step(entry, EDIT)
        self.tracker.track_edit(objects, removed)
        return entry

    def add_rewind(self, entry: RewindEntry) -> None:
        """A rewind, as a step (its seq taken with `next_seq` when it began)."""
        self._add_step(entry, REWIND)

    def _add_step(self, entry: EditEntry | RewindEntry, kind: int) -> None:
        at = self.journal.write(entry)
        self.next_seq = max(self.next_seq, entry.seq + 1)
        self.steps.note_step(entry.seq, kind, *at)
        self.last_activity = time.time()

    def note_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        """A checkpoint taken, changed (a label) or thinned. Raises OSError."""
        self.journal.write(checkpoint)
        self.checkpoints[checkpoint.seq] = checkpoint

    def adopt_instance(self, instance: str) -> None:
        """The session was opened before any Blender said hello: this one is its own."""
        self.instance_id = instance

    # --- records --------------------------------------------------------------------

    def state_record(self) -> SessionState:
        return self.tracker.session_state(self.last_command, self.last_result)

    def to_data(
        self,
        commands: list[CommandRecord] | None = None,
        *,
        closed_at: float | None = None,
        snapshot: SnapshotInfo | None = None,
    ) -> SessionData:
        """The record's data; its history only as given (close streams it instead)."""
        return SessionData(
            session_id=self.session_id,
            name=self.name,
            created_at=self.created_at,
            last_activity=self.last_activity,
            closed_at=closed_at,
            blender=blender_info(self.link, self.instance_id),
            state=self.state_record(),
            command_count=self.command_count,
            restored_from=self.restored_from,
            snapshot=snapshot or self.snapshot,
            commands=commands or [],
            data=self.data,
            restarts=self.restarts,
            checkpoints=sorted(self.checkpoints.values(), key=lambda c: c.seq),
            last_seq=self.last_seq,
        )

    def summary(self, size_bytes: int) -> SessionSummary:
        return SessionSummary(
            session_id=self.session_id,
            name=self.name,
            status="open",
            created_at=self.created_at,
            closed_at=None,
            command_count=self.command_count,
            size_bytes=size_bytes,
            restored_from=self.restored_from,
            detached=self.detached,
            blender_version=self.link.info().blender_version or None,
        )


def blender_info(link: BlenderLink, instance_id: str) -> BlenderInfo:
    """The record's `blender` block: what is true of the link right now."""
    info = link.info()
    return BlenderInfo(
        connected=info.connected,
        host=link.host,
        port=link.port,
        last_heartbeat=info.last_heartbeat,
        version=info.blender_version,
        file=info.file,
        instance_id=instance_id,
    )


def _record(start: CommandStart, done: JournalDone | JournalLate) -> CommandRecord:
    return CommandRecord(
        seq=start.seq,
        type=start.type,
        params=start.params,
        status=done.status,
        started_at=start.started_at,
        duration_ms=done.duration_ms,
        client_id=start.client_id,
        result=done.result,
        error=done.error,
        housekeeping=start.housekeeping,
        observation=isinstance(done, JournalDone) and done.observation,
    )


def _error_body(error: ProtocolError | None) -> ErrorBody | None:
    return None if error is None else ErrorBody(code=error.code.value, message=error.message)
