"""The one command path, without sockets: a `Session` on a temp store, a fake link whose
outcomes the test delivers by hand, and the `CommandPath` between them. What must hold
whatever happens: exactly one reply per command, the command released (not in flight),
the journal telling the truth, and `close`-style waiting never hanging."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
import trio

from daemon.events import Broadcaster
from daemon.protocol import ErrorCode, NoAnswer, Outcome, ProtocolError, RemoteProtocolError
from daemon.protocol.messages import NULL, LinkFailure, LinkSuccess
from daemon.protocol.ops import BlenderLinkInfo, CommandResult
from daemon.sessions import CommandPath, Session
from daemon.sessions.blender import Answer
from daemon.store import (
    BlenderInfo,
    JournalOpen,
    SessionData,
    SessionState,
    SessionStore,
    new_session_id,
    replay_journal,
)

from .helpers import local_store

WAIT_S = 5.0  # bound on every wait here (autojump clock: virtual seconds)


@dataclass
class Sent:
    type: str
    params: bytes
    deliver: Callable[[Outcome], None]
    on_late: Callable[[Answer], None] | None


@dataclass
class FakeLink:
    """A BlenderLink whose outcomes the test delivers by hand."""

    connected: bool = True
    sent: list[Sent] = field(default_factory=list)
    endpoint: str = "127.0.0.1:9876"
    host: str = "127.0.0.1"
    port: int = 9876
    addon_commands: list[str] = field(default_factory=list)

    def info(self) -> BlenderLinkInfo:
        return BlenderLinkInfo(
            endpoint=self.endpoint, status="connected", connected=self.connected,
            blender_version="5.0.1", file="", last_heartbeat=None, busy_for_ms=0.0,
            queue_depth=0, last_error="", execute_code_enabled=False, found="",
            instance_id="one",
        )  # fmt: skip

    def submit(
        self,
        type: str,
        params: bytes,
        deliver: Callable[[Outcome], None],
        on_late: Callable[[Answer], None] | None = None,
    ) -> None:
        if not self.connected:
            raise self.unavailable_error()
        self.sent.append(Sent(type, params, deliver, on_late))

    async def request(self, type: str, params: bytes | None = None) -> bytes:
        raise self.unavailable_error()

    async def attach(self, session_id: str | None, name: str | None = None) -> None:
        pass

    def error_for(self, type: str, outcome: Outcome) -> RemoteProtocolError:
        if isinstance(outcome, LinkFailure):
            return RemoteProtocolError(ErrorCode(outcome.code), outcome.message)
        if outcome is NoAnswer.TIMED_OUT:
            return RemoteProtocolError(ErrorCode.TIMEOUT, f"{type} timed out")
        return RemoteProtocolError(ErrorCode.BLENDER_UNAVAILABLE, f"{type}: no answer")

    def unavailable_error(self, *, lost: bool = False) -> RemoteProtocolError:
        return RemoteProtocolError(ErrorCode.BLENDER_UNAVAILABLE, "no Blender")


class Replies:
    def __init__(self) -> None:
        self.got: list[CommandResult | ProtocolError] = []

    def __call__(self, answer: CommandResult | ProtocolError) -> None:
        self.got.append(answer)


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return local_store(tmp_path / "data")


async def open_session(store: SessionStore, link: FakeLink) -> Session:
    session_id = new_session_id()
    now = time.time()
    data = SessionData(
        session_id=session_id, name=None, created_at=now, last_activity=now, closed_at=None,
        blender=BlenderInfo(instance_id="one"), state=SessionState(scene=NULL), command_count=0,
        restored_from=None, snapshot=None, commands=[],
    )  # fmt: skip
    journal = await store.open_journal(session_id)
    journal.write(JournalOpen(session=data))
    journal.flush()
    return Session(data, link, journal)


def written(session: Session) -> None:
    """What a reader task does once it has handled what it read: write the journal's
    pending lines (sending the commands they start, answering the ones they finish)."""
    session.journal.flush()


CUBE = msgspec.Raw(b'{"kind": "cube", "name": "Box"}')
BOX = (
    b'{"name": "Box", "type": "MESH", "location": [0, 0, 0], "rotation": [0, 0, 0], '
    b'"scale": [1, 1, 1]}'
)


def path() -> CommandPath:
    return CommandPath(
        Broadcaster(),
        lambda error, what: RemoteProtocolError(ErrorCode.STORAGE, f"{error}; {what}"),
    )  # type: ignore[arg-type]  # a test double


async def test_success_is_journaled_before_the_reply_and_released(
    store: SessionStore, autojump_clock: trio.abc.Clock
) -> None:
    link, replies, commands = FakeLink(), Replies(), path()
    session = await open_session(store, link)
    commands.submit(session, "create_object", CUBE, "client", replies)
    written(session)
    assert session.in_flight == 1 and replies.got == []
    journal_before = replay_journal(session.journal.path)
    assert [(c.seq, c.status) for c in journal_before.commands] == [(1, "unknown")]  # started
    link.sent[0].deliver(LinkSuccess(result=msgspec.Raw(BOX)))
    written(session)
    (reply,) = replies.got
    assert isinstance(reply, CommandResult) and reply.seq == 1 and b"Box" in bytes(reply.result)
    assert session.in_flight == 0 and list(session.tracker.objects) == ["Box"]
    (command,) = replay_journal(session.journal.path).commands
    assert (command.seq, command.status) == (1, "success")


@pytest.mark.parametrize("where", ["finish", "tracking", "reply"])
async def test_a_raising_callback_still_gives_one_internal_reply_and_close_does_not_hang(
    store: SessionStore,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.abc.Clock,
    where: str,
) -> None:
    link, commands = FakeLink(), path()
    session = await open_session(store, link)
    got: list[CommandResult | ProtocolError] = []

    def reply(answer: CommandResult | ProtocolError) -> None:
        got.append(answer)
        if where == "reply":
            raise RuntimeError("the client's reply callback broke")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{where} broke")

    if where == "finish":
        monkeypatch.setattr(session, "finish_command", broken)
    elif where == "tracking":
        monkeypatch.setattr(session.tracker, "track", broken)
    commands.submit(session, "create_object", CUBE, None, reply)
    written(session)
    link.sent[0].deliver(LinkSuccess(result=msgspec.Raw(BOX)))
    written(session)
    link.sent[0].deliver(LinkSuccess(result=msgspec.Raw(BOX)))  # a duplicate: ignored
    written(session)
    assert len(got) == 1
    if where == "finish":
        assert isinstance(got[0], RemoteProtocolError) and got[0].code is ErrorCode.INTERNAL
    assert session.in_flight == 0
    with trio.fail_after(WAIT_S):
        await session.wait_idle()  # what close waits for


async def test_no_answer_is_unknown_and_a_late_answer_takes_the_real_outcome(
    store: SessionStore, autojump_clock: trio.abc.Clock
) -> None:
    link, replies, commands = FakeLink(), Replies(), path()
    session = await open_session(store, link)
    commands.submit(session, "create_object", CUBE, None, replies)
    written(session)
    link.sent[0].deliver(NoAnswer.TIMED_OUT)
    written(session)
    (reply,) = replies.got
    assert isinstance(reply, RemoteProtocolError) and reply.code is ErrorCode.TIMEOUT
    (command,) = replay_journal(session.journal.path).commands
    assert command.status == "unknown" and command.error is not None  # never `error`
    on_late = link.sent[0].on_late
    assert on_late is not None
    on_late(LinkSuccess(result=msgspec.Raw(BOX)))
    written(session)
    (command,) = replay_journal(session.journal.path).commands
    assert (command.status, command.late) == ("success", True)
    assert b"Box" in bytes(command.result)
    assert len(replies.got) == 1  # the client was answered once, at the timeout


async def test_refused_commands_take_no_seq_and_cost_blender_nothing(
    store: SessionStore, autojump_clock: trio.abc.Clock
) -> None:
    link, replies, commands = FakeLink(), Replies(), path()
    session = await open_session(store, link)
    for type, params in [
        ("create_object", b'{"kind": "blob"}'),
        ("transform_object", b'{"name": "A", "locaton": [5, 5, 5]}'),
        ("teleport", b"{}"),
        ("ping", b"{}"),
    ]:
        commands.submit(session, type, msgspec.Raw(params), None, replies)
        written(session)
    link.connected = False
    commands.submit(session, "get_state", msgspec.Raw(b"{}"), None, replies)
    written(session)
    codes = [r.code.value for r in replies.got if isinstance(r, ProtocolError)]
    assert codes == ["invalid_params", "invalid_params", "unknown_command", "unknown_command",
                     "blender_unavailable"]  # fmt: skip
    assert link.sent == [] and session.next_seq == 1 and session.in_flight == 0


async def test_a_journal_that_cannot_take_the_start_means_the_command_is_not_sent(
    store: SessionStore, autojump_clock: trio.abc.Clock
) -> None:
    link, replies, commands = FakeLink(), Replies(), path()
    session = await open_session(store, link)
    await session.journal.close()  # as if the disk refused every write
    commands.submit(session, "create_object", CUBE, None, replies)
    written(session)
    (reply,) = replies.got
    assert isinstance(reply, RemoteProtocolError) and reply.code is ErrorCode.STORAGE
    assert "not sent to Blender" in reply.message
    assert link.sent == [] and session.in_flight == 0


async def test_an_opaque_command_finishes_once_its_scene_read_is_in_too(
    store: SessionStore, autojump_clock: trio.abc.Clock
) -> None:
    link, replies, commands = FakeLink(), Replies(), path()
    session = await open_session(store, link)
    commands.submit(session, "apply_state", msgspec.Raw(b'{"objects": []}'), None, replies)
    written(session)
    assert [s.type for s in link.sent] == ["apply_state", "get_scene_info"]  # one pipeline
    scene = (b'{"name": "S", "object_count": 1, "materials_count": 0, '
             b'"objects": [{"name": "Made", "type": "MESH", "location": [0, 0, 0]}]}')  # fmt: skip
    link.sent[1].deliver(LinkSuccess(result=msgspec.Raw(scene)))  # either order
    written(session)
    assert replies.got == []
    applied = b'{"created": [], "updated": [], "removed": [], "skipped": []}'
    link.sent[0].deliver(LinkSuccess(result=msgspec.Raw(applied)))
    written(session)
    assert len(replies.got) == 1 and isinstance(replies.got[0], CommandResult)
    assert list(session.tracker.objects) == ["Made"]


async def test_a_result_that_cannot_be_stored_is_unknown_not_journaled_raw(
    store: SessionStore, autojump_clock: trio.abc.Clock
) -> None:
    link, replies, commands = FakeLink(), Replies(), path()
    session = await open_session(store, link)
    commands.submit(session, "get_state", msgspec.Raw(b"{}"), None, replies)
    written(session)
    link.sent[0].deliver(LinkSuccess(result=msgspec.Raw(b'{"scene": "\xff", "x": 1e400}')))
    written(session)
    (reply,) = replies.got
    assert isinstance(reply, RemoteProtocolError) and reply.code is ErrorCode.INTERNAL
    (command,) = replay_journal(session.journal.path).commands
    assert command.status == "unknown" and bytes(command.result) == b"null"


async def test_run_is_submit_and_wait_and_a_cancelled_caller_changes_nothing(
    store: SessionStore, autojump_clock: trio.abc.Clock
) -> None:
    link, commands = FakeLink(), path()
    session = await open_session(store, link)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.journal.run)  # its own task writes what is pending
        with trio.move_on_after(1):  # the caller gives up while Blender works
            await commands.run(session, "create_object", CUBE, None)
        link.sent[0].deliver(LinkSuccess(result=msgspec.Raw(BOX)))
        await session.journal.close()
    (command,) = replay_journal(session.journal.path).commands
    assert command.status == "success" and session.in_flight == 0


async def test_a_link_that_fails_between_the_start_and_the_send_still_releases(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    """Found by the link fuzz campaign: the core had failed (framing lost) before the
    supervisor tore the connection down, and `submit` raised LocalProtocolError after
    the command had started: it stayed in flight forever and `close` hung."""
    from daemon.protocol import LocalProtocolError

    link, replies, commands = FakeLink(), Replies(), path()
    session = await open_session(store, link)

    def failed_core(*args: object, **kwargs: object) -> None:
        raise LocalProtocolError(ErrorCode.INTERNAL, "connection in state ERROR")

    monkeypatch.setattr(link, "submit", failed_core)
    commands.submit(session, "create_object", CUBE, None, replies)
    written(session)
    (reply,) = replies.got
    assert isinstance(reply, ProtocolError)
    assert session.in_flight == 0
    with trio.fail_after(WAIT_S):
        await session.wait_idle()
    (command,) = replay_journal(session.journal.path).commands
    assert command.status == "error"  # recorded: asked for, never sent
