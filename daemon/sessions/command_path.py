"""The one path every scene command takes, whoever sends it (control port, proxy,
restore, MCP through the control port).

Theory of operation:
1. Checked first: params against the command's schema and as storable JSON, the
   session accepting commands, Blender connected. A refusal costs Blender nothing and
   takes no `seq`.
2. Journal before send: `Session.start_command` writes the start line; if it cannot,
   the command is not sent and the client gets `storage`.
3. Sent without waiting (`link.submit`); the link delivers exactly one outcome, from
   its reader task. An opaque command (its effect not in its result) is followed, in
   the same pipeline, by a scene read, and finishes when both are in. A blender-mcp
   observation script is also preceded by one: unchanged, it is recorded as an
   observation (not a change, and no checkpoint behind it).
4. Outcome before reply: `Session.finish_command` journals it (`unknown` when no
   answer came), then the reply goes out, after an fsync when the journal fsyncs,
   and after the shared store's commit when there is one (`--store postgresql://`).
5. Exactly one reply per request, whatever raises on the way: `_Command.answer` and the
   guards below turn any exception into an `internal` reply, and the command is
   released (not in flight) in every case, so `close` never waits forever.
6. A caller that goes away changes nothing: the outcome is journaled by the link's
   delivery, not by the caller. `run()` is `submit()` plus a wait.
7. An answer that comes after `unknown` is journaled as the real outcome (`late`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
import structlog
import trio

from ..events import Broadcaster, CommandDone, CommandLate, StorageFailed
from ..protocol import (
    ErrorCode,
    NoAnswer,
    Outcome,
    ProtocolError,
    RemoteProtocolError,
    StorageError,
    UnreadableReply,
    check_command,
    check_json,
)
from ..protocol.commands import OPAQUE_COMMANDS, is_observation
from ..protocol.messages import LinkFailure, LinkSuccess
from ..protocol.ops import CommandResult
from .blender import Answer
from .session import CommandOutcome, CommandStart, Finished, Session

log = structlog.get_logger("sessions")
_encoder = msgspec.json.Encoder()

Reply = Callable[[CommandResult | ProtocolError], None]
AfterSend = Callable[[Session, CommandStart], None]
StorageErrors = Callable[[OSError, str], StorageError]
SCENE_READ = b"{}"


class CommandPath:
    def __init__(
        self,
        events: Broadcaster,
        storage_error: StorageErrors,
        after_send: AfterSend = lambda session, start: None,
    ) -> None:
        self._events = events
        self.storage_error = storage_error
        # Called right after a command went down the link, in the pipeline's order
        # (checkpoints.py puts a checkpoint behind it when one is due). Never raises.
        self.after_send = after_send
        # Logging is configured before the daemon is built; at the default level each
        # command gets a line, and at `warning` the hot path skips building one.
        self._log_each_command = log.is_enabled_for(logging.INFO)

    def submit(
        self,
        session: Session,
        type: str,
        params: msgspec.Raw,
        client_id: str | None,
        reply: Reply,
    ) -> None:
        """Send a command; `reply` gets its result or error exactly once, later or now.
        Never raises."""
        command = _Command(self, session, reply)
        start: CommandStart | None = None
        try:
            checked = check_command(type, params, session.link.addon_commands)
            session.check_accepting()
            if session.journal.replica is not None:
                session.journal.replica.check_room()
            if not session.link.connected:
                raise session.link.unavailable_error()
            try:
                start = session.start_command(type, checked, client_id)
            except OSError as error:
                raise self.storage_error(error, NOT_SENT) from None
            command.start = start
            session.journal.when_written(command.start_written)
        except ProtocolError as error:
            if start is not None:
                session.release(start)  # idempotent, if its outcome still comes
            command.answer(error)
        except Exception as error:  # a bug: answer `internal`, keep serving
            log.exception("command_failed", session_id=session.session_id, type=type)
            if start is not None:
                session.release(start)  # idempotent, if its outcome still comes
            command.answer(_internal(type, error))

    async def run(
        self, session: Session, type: str, params: msgspec.Raw, client_id: str | None
    ) -> CommandResult:
        """`submit` and wait for the reply. Raises ProtocolError. A caller cancelled
        while Blender works changes nothing: the outcome is journaled all the same."""
        done = trio.Event()
        answers: list[CommandResult | ProtocolError] = []

        def reply(answer: CommandResult | ProtocolError) -> None:
            answers.append(answer)
            done.set()

        self.submit(session, type, params, client_id, reply)
        session.journal.flush()  # send it now: this task waits anyway
        await done.wait()
        if isinstance(answers[0], ProtocolError):
            raise answers[0]
        return answers[0]

    # --- finishing ------------------------------------------------------------------

    def finish(
        self,
        session: Session,
        start: CommandStart,
        outcome: Outcome,
        scene: Outcome | None,
        before: Outcome | None = None,
    ) -> tuple[CommandResult | ProtocolError, Finished | None]:
        """Record an outcome; return the client's answer. Never raises. The command is
        released (no longer in flight) in every case."""
        try:
            recorded = self._outcome(session, start, outcome, scene, before)
            finished = session.finish_command(start, recorded)  # releases it
            if finished.journal_error is not None:
                self.outcome_not_written(session, finished, finished.journal_error)
            self._announce(session, finished)
            return recorded.error or _result(session, finished), finished
        except Exception as error:
            log.exception("command_finish_failed", session_id=session.session_id, seq=start.seq)
            session.release(start)
            return _internal(start.type, error), None

    def outcome_not_written(self, session: Session, finished: Finished, error: OSError) -> None:
        """The journal could not take an outcome: keep it for the record, and say so."""
        session.keep_unjournaled(finished)
        seq = finished.start.seq
        message = self.storage_error(error, _KEPT_IN_MEMORY).message
        log.error("journal_write_failed", session_id=session.session_id, seq=seq, reason=message)
        self._events.publish(StorageFailed(session_id=session.session_id, seq=seq, message=message))

    def late(self, session: Session, start: CommandStart, answer: Answer) -> None:
        """The real outcome of an `unknown` command arrived. Never raises."""
        try:
            outcome = self._outcome(session, start, answer, None)

            def written(error: OSError | None) -> None:
                log.warning(
                    "command_late",
                    session_id=session.session_id,
                    seq=start.seq,
                    type=start.type,
                    status=outcome.status,
                    journaled=error is None,
                )

            session.record_late(start, outcome, written)
            self._events.publish(
                CommandLate(
                    session_id=session.session_id,
                    seq=start.seq,
                    type=start.type,
                    status=outcome.status,
                )
            )
        except Exception:
            log.exception("late_outcome_failed", session_id=session.session_id, seq=start.seq)

    def _outcome(
        self,
        session: Session,
        start: CommandStart,
        outcome: Outcome,
        scene: Outcome | None,
        before: Outcome | None = None,
    ) -> CommandOutcome:
        """What the link delivered, as the record and the client will see it."""
        link = session.link
        match outcome:
            case LinkSuccess(result=result):
                try:
                    check_json(result, f"Blender's result of {start.type!r}")
                except RemoteProtocolError as unstorable:
                    return CommandOutcome(
                        status="unknown",
                        error=RemoteProtocolError(ErrorCode.INTERNAL, unstorable.message),
                    )
                return CommandOutcome(
                    status="success",
                    result=bytes(result),
                    scene_info=_scene_read(scene),
                    scene_before=_scene_read(before),
                )
            case LinkFailure():
                return CommandOutcome(status="error", error=link.error_for(start.type, outcome))
            case UnreadableReply() | NoAnswer():
                return CommandOutcome(status="unknown", error=link.error_for(start.type, outcome))

    def _announce(self, session: Session, finished: Finished) -> None:
        """Log and publish a finished command."""
        start = finished.start
        if self._log_each_command:
            log.info(
                "command_done",
                session_id=session.session_id,
                client_id=start.client_id,
                seq=start.seq,
                type=start.type,
                status=finished.status,
                duration_ms=finished.duration_ms,
            )
        if self._events.subscribed:
            self._events.publish(
                CommandDone(
                    session_id=session.session_id,
                    seq=start.seq,
                    type=start.type,
                    status=finished.status,
                    duration_ms=finished.duration_ms,
                )
            )


class _Command:
    """One submitted command: its reply, sent exactly once and never raising into its
    caller, and the join of what the link delivers for it (its outcome and, after an
    opaque command, the scene read, in either order), finished once."""

    __slots__ = ("_answer", "_before", "_command", "_finished", "_path", "_reply", "_scene",
                 "_scene_in", "_session", "replied", "start")  # fmt: skip

    def __init__(self, path: CommandPath, session: Session, reply: Reply) -> None:
        self._path, self._session, self._reply = path, session, reply
        self.start: CommandStart | None = None
        self._command: Outcome | None = None
        self._scene: Outcome | None = None
        self._before: Outcome | None = None  # the scene read before an observation script
        self._scene_in = True
        self._finished = False
        self._answer: CommandResult | ProtocolError | None = None
        self.replied = False

    # --- sending --------------------------------------------------------------------

    def start_written(self, error: OSError | None) -> None:
        """The start line is in the journal (or could not be written): send, or refuse."""
        start = self.start
        assert start is not None
        try:
            if error is not None:
                self._session.not_started(start)
                self.answer(self._path.storage_error(error, NOT_SENT))
            else:
                self._send(start)
        except Exception as failure:  # a bug: answer `internal`, keep serving
            log.exception("command_failed", session_id=self._session.session_id, type=start.type)
            self._session.release(start)
            self.answer(_internal(start.type, failure))

    def _send(self, start: CommandStart) -> None:
        """Hand the command (and, after an opaque one, its scene read) to the link."""
        link = self._session.link
        opaque = start.type in OPAQUE_COMMANDS
        self._scene_in = not opaque  # else a scene read to wait for
        start.observing = opaque and is_observation(start.type, start.params)
        try:
            if start.observing:
                link.submit("get_scene_info", SCENE_READ, self.scene_before)
            link.submit(start.type, bytes(start.params), self.command, self.late)
            if opaque:
                link.submit("get_scene_info", SCENE_READ, self.scene)
        except ProtocolError as error:  # the link went away meanwhile: never sent
            self.not_sent(error)
            return
        self._path.after_send(self._session, start)

    # --- what the link delivers -----------------------------------------------------

    def command(self, outcome: Outcome) -> None:
        self._command = outcome
        self._maybe_finish()

    def scene_before(self, outcome: Outcome) -> None:
        self._before = outcome  # always in before the command's own outcome

    def scene(self, outcome: Outcome) -> None:
        self._scene, self._scene_in = outcome, True
        self._maybe_finish()

    def late(self, answer: Answer) -> None:
        if self.start is not None:
            self._path.late(self._session, self.start, answer)

    def not_sent(self, error: ProtocolError) -> None:
        if self._command is None:
            self._command = LinkFailure(code=error.code.value, message=error.message)
        self._scene_in = True
        self._maybe_finish()

    # --- finishing ------------------------------------------------------------------

    def _maybe_finish(self) -> None:
        if self._finished or self._command is None or not self._scene_in:
            return
        assert self.start is not None  # outcomes only come for a sent command
        self._finished = True
        answer, finished = self._path.finish(
            self._session, self.start, self._command, self._scene, self._before
        )
        self._answer = answer
        if finished is None or finished.journal_error is not None:
            self.answer(answer)  # nothing more will be written for it
            return

        def written(error: OSError | None) -> None:
            if error is not None:  # it ran: the outcome stays in memory for the record
                self._path.outcome_not_written(self._session, finished, error)
                self.answer(answer)
            else:
                self._session.journal.when_synced(self._synced)

        self._session.journal.when_written(written)

    def _synced(self, failure: OSError | None) -> None:
        answer = self._answer
        assert answer is not None
        if failure is not None and not isinstance(answer, ProtocolError):
            self.answer(self._path.storage_error(failure, _NOT_DURABLE))
        else:
            self._session.journal.when_replicated(self._replicated)

    def _replicated(self, failure: OSError | None) -> None:
        answer = self._answer
        assert answer is not None
        if failure is not None and not isinstance(answer, ProtocolError):
            self.answer(StorageError(ErrorCode.STORAGE, f"{_NOT_SHARED}: {failure}"))
        else:
            self.answer(answer)

    def answer(self, answer: CommandResult | ProtocolError) -> None:
        """Reply to the client, once."""
        if self.replied:
            log.error("second_reply_dropped", answer=repr(answer))
            return
        self.replied = True
        try:
            self._reply(answer)
        except Exception:
            log.exception("reply_failed")


NOT_SENT = "the command was not sent to Blender"
_NOT_DURABLE = "the command ran and is journaled, but the fsync failed: a power loss may lose it"
_NOT_SHARED = "the command ran and is in this daemon's journal, but not in the shared store"
_KEPT_IN_MEMORY = (
    "the command ran in Blender; its outcome is kept in memory and goes into the record at close"
)


def _scene_read(read: Outcome | None) -> bytes | None:
    if not isinstance(read, LinkSuccess):
        return None
    try:
        check_json(read.result, "Blender's scene")
    except RemoteProtocolError:
        return None
    return bytes(read.result)


def _result(session: Session, finished: Finished) -> CommandResult:
    return CommandResult(
        session_id=session.session_id,
        seq=finished.start.seq,
        type=finished.start.type,
        status="success",
        duration_ms=finished.duration_ms,
        result=finished.line.result,
    )


def _internal(type: str, error: Exception) -> RemoteProtocolError:
    return RemoteProtocolError(ErrorCode.INTERNAL, f"internal error in {type!r}: {error!r}")
