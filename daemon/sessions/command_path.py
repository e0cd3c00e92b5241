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
   the same pipeline, by a scene read, and finishes when both are in.
4. Outcome before reply: `Session.finish_command` journals it (`unknown` when no
   answer came), then the reply goes out, after an fsync when the journal fsyncs.
5. Exactly one reply per request, whatever raises on the way: `_ReplyOnce` and the
   guards below turn any exception into an `internal` reply, and the command is
   released (not in flight) in every case, so `close` never waits forever.
6. A caller that goes away changes nothing: the outcome is journaled by the link's
   delivery, not by the caller. `run()` is `submit()` plus a wait.
7. An answer that comes after `unknown` is journaled as the real outcome (`late`).
"""

from __future__ import annotations

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
from ..protocol.commands import OPAQUE_COMMANDS
from ..protocol.messages import LinkFailure, LinkSuccess
from ..protocol.ops import CommandResult
from .blender import Answer
from .session import CommandOutcome, CommandStart, Finished, Session

log = structlog.get_logger("sessions")
_encoder = msgspec.json.Encoder()

Reply = Callable[[CommandResult | ProtocolError], None]
StorageErrors = Callable[[OSError, str], StorageError]
SCENE_READ = b"{}"


class _ReplyOnce:
    """A reply callback that runs at most once and never raises into its caller."""

    __slots__ = ("_reply", "sent")

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self.sent = False

    def __call__(self, answer: CommandResult | ProtocolError) -> None:
        if self.sent:
            log.error("second_reply_dropped", answer=repr(answer))
            return
        self.sent = True
        try:
            self._reply(answer)
        except Exception:
            log.exception("reply_failed")


class CommandPath:
    def __init__(self, events: Broadcaster, storage_error: StorageErrors) -> None:
        self._events = events
        self._storage_error = storage_error

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
        once = _ReplyOnce(reply)
        start: CommandStart | None = None
        try:
            checked = check_command(type, params, session.link.addon_commands)
            session.check_accepting()
            if not session.link.connected:
                raise session.link.unavailable_error()
            try:
                start = session.start_command(type, checked, client_id)
            except OSError as error:
                raise self._storage_error(error, "the command was not sent to Blender") from None
            self._send(session, start, once)
        except ProtocolError as error:
            if start is not None:
                session.release(start)  # idempotent, if its outcome still comes
            once(error)
        except Exception as error:  # a bug: answer `internal`, keep serving
            log.exception("command_failed", session_id=session.session_id, type=type)
            if start is not None:
                session.release(start)  # idempotent, if its outcome still comes
            once(_internal(type, error))

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
        await done.wait()
        if isinstance(answers[0], ProtocolError):
            raise answers[0]
        return answers[0]

    # --- sending and finishing ------------------------------------------------------

    def _send(self, session: Session, start: CommandStart, reply: _ReplyOnce) -> None:
        finish = _Finisher(self, session, start, reply)
        try:
            session.link.submit(start.type, bytes(start.params), finish.command, finish.late)
            if start.type in OPAQUE_COMMANDS:
                session.link.submit("get_scene_info", SCENE_READ, finish.scene)
        except ProtocolError as error:  # the link went away in between: never sent
            finish.not_sent(error)

    def finish(
        self, session: Session, start: CommandStart, outcome: Outcome, reply: _ReplyOnce,
        scene: Outcome | None,
    ) -> None:  # fmt: skip
        """Record an outcome, then reply (after the journal is durable). Never raises."""
        answer: CommandResult | ProtocolError
        try:
            recorded = self._outcome(session, start, outcome, scene)
            finished = session.finish_command(start, recorded)
            self._announce(session, finished)
            answer = recorded.error or _result(session, finished)
        except Exception as error:  # a bug: the command is still released below
            log.exception("command_finish_failed", session_id=session.session_id, seq=start.seq)
            answer = _internal(start.type, error)
        finally:
            session.release(start)

        def after_fsync(failure: OSError | None) -> None:
            if failure is not None and not isinstance(answer, ProtocolError):
                reply(self._storage_error(failure, _NOT_DURABLE))
            else:
                reply(answer)

        try:
            session.journal.when_durable(after_fsync)
        except Exception as error:
            log.exception("reply_scheduling_failed", session_id=session.session_id)
            reply(_internal(start.type, error))

    def late(self, session: Session, start: CommandStart, answer: Answer) -> None:
        """The real outcome of an `unknown` command arrived. Never raises."""
        try:
            outcome = self._outcome(session, start, answer, None)
            failure = session.record_late(start, outcome)
            log.warning(
                "command_late",
                session_id=session.session_id,
                seq=start.seq,
                type=start.type,
                status=outcome.status,
                journaled=failure is None,
            )
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
        self, session: Session, start: CommandStart, outcome: Outcome, scene: Outcome | None
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
                scene_info = None
                if isinstance(scene, LinkSuccess):
                    try:
                        check_json(scene.result, "Blender's scene")
                        scene_info = bytes(scene.result)
                    except RemoteProtocolError:
                        scene_info = None
                return CommandOutcome(status="success", result=bytes(result), scene_info=scene_info)
            case LinkFailure():
                return CommandOutcome(status="error", error=link.error_for(start.type, outcome))
            case UnreadableReply() | NoAnswer():
                return CommandOutcome(status="unknown", error=link.error_for(start.type, outcome))

    def _announce(self, session: Session, finished: Finished) -> None:
        """Log and publish a finished command."""
        command = finished.record
        if finished.journal_error is not None:
            message = self._storage_error(
                finished.journal_error,
                "the command ran in Blender; its outcome is kept in memory and goes into the "
                "record at close",
            ).message
            log.error(
                "journal_write_failed",
                session_id=session.session_id,
                seq=command.seq,
                reason=message,
            )
            self._events.publish(
                StorageFailed(session_id=session.session_id, seq=command.seq, message=message)
            )
        log.info(
            "command_done",
            session_id=session.session_id,
            client_id=command.client_id,
            seq=command.seq,
            type=command.type,
            status=command.status,
            duration_ms=command.duration_ms,
        )
        if self._events.subscribed:
            self._events.publish(
                CommandDone(
                    session_id=session.session_id,
                    seq=command.seq,
                    type=command.type,
                    status=command.status,
                    duration_ms=command.duration_ms,
                )
            )


class _Finisher:
    """Joins what the link delivers for one command (its outcome and, after an opaque
    command, the scene read, in either order) and finishes the command once."""

    __slots__ = ("_command", "_done", "_path", "_reply", "_scene", "_scene_in", "_session",
                 "_start")  # fmt: skip

    def __init__(
        self, path: CommandPath, session: Session, start: CommandStart, reply: _ReplyOnce
    ) -> None:
        self._path, self._session, self._start, self._reply = path, session, start, reply
        self._command: Outcome | None = None
        self._scene: Outcome | None = None
        self._scene_in = start.type not in OPAQUE_COMMANDS  # no scene read to wait for
        self._done = False

    def command(self, outcome: Outcome) -> None:
        self._command = outcome
        self._maybe_finish()

    def scene(self, outcome: Outcome) -> None:
        self._scene, self._scene_in = outcome, True
        self._maybe_finish()

    def late(self, answer: Answer) -> None:
        self._path.late(self._session, self._start, answer)

    def not_sent(self, error: ProtocolError) -> None:
        if self._command is None:
            self._command = LinkFailure(code=error.code.value, message=error.message)
        self._scene_in = True
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._done or self._command is None or not self._scene_in:
            return
        self._done = True
        self._path.finish(self._session, self._start, self._command, self._reply, self._scene)


_NOT_DURABLE = "the command ran and is journaled, but the fsync failed: a power loss may lose it"


def _result(session: Session, finished: Finished) -> CommandResult:
    command = finished.record
    return CommandResult(
        session_id=session.session_id,
        seq=command.seq,
        type=command.type,
        status="success",
        duration_ms=command.duration_ms or 0.0,
        result=command.result,
    )


def _internal(type: str, error: Exception) -> RemoteProtocolError:
    return RemoteProtocolError(ErrorCode.INTERNAL, f"internal error in {type!r}: {error!r}")
