"""The daemon's addon link: heartbeat, busy vs dead, reconnect, requests.

Timing runs on autojump_clock against the fake addon over in-memory streams, so the
times asserted are exact virtual times.

Long because each way a link can fail is a short test beside the others.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
from collections.abc import Callable

import pytest
import structlog
import structlog.testing
import trio
import trio.testing

from daemon.link import AddonLink, LinkConfig, LinkStatus
from daemon.protocol import ErrorCode, NoAnswer, RemoteProtocolError
from daemon.protocol.messages import LinkSuccess

from .fake_addon import FakeAddon


class Recorder:
    """A LinkObserver that notes (virtual time, status) at every change."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, LinkStatus]] = []
        self.changed = trio.Event()
        self.instances: list[tuple[str, str]] = []  # (previous, new) at each hello

    def link_changed(self, link: AddonLink) -> None:
        if not self.changes or self.changes[-1][1] is not link.snapshot.status:
            self.changes.append((trio.current_time(), link.snapshot.status))
            self.changed.set()
            self.changed = trio.Event()

    def scene_changed(self, link: AddonLink, data: object, missed: int) -> None:
        pass

    def blender_connected(self, link: AddonLink, previous_instance: str) -> None:
        self.instances.append((previous_instance, link.snapshot.instance_id))

    def handling_answers(self, link: AddonLink) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    async def wait_for(self, status: LinkStatus) -> float:
        while not self.changes or self.changes[-1][1] is not status:
            await self.changed.wait()
        return self.changes[-1][0]


async def start_link(
    nursery: trio.Nursery, fake: FakeAddon, **config: float
) -> tuple[AddonLink, Recorder]:
    recorder = Recorder()
    link = AddonLink(
        LinkConfig(**config),  # type: ignore[arg-type]
        recorder,
        connect=functools.partial(fake.connect, nursery=nursery),
        jitter=random.Random(7),
    )
    await nursery.start(link.run)
    await recorder.wait_for(LinkStatus.CONNECTED)
    return link, recorder


async def test_dead_exactly_at_heartbeat_timeout_after_last_pong(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = FakeAddon()
    async with trio.open_nursery() as nursery:
        link, recorder = await start_link(
            nursery, fake, heartbeat_interval_s=1.0, heartbeat_timeout_s=5.0
        )
        await trio.sleep(2.5)  # pongs at t=0, 1, 2
        fake.answer_pings = False
        dead_at = await recorder.wait_for(LinkStatus.DISCONNECTED)
        assert dead_at == 2.0 + 5.0
        assert "no heartbeat" in link.snapshot.last_error
        nursery.cancel_scope.cancel()


async def test_busy_main_thread_is_busy_not_dead(autojump_clock: trio.abc.Clock) -> None:
    fake = FakeAddon()
    async with trio.open_nursery() as nursery:
        link, recorder = await start_link(nursery, fake)
        fake.busy = True
        await recorder.wait_for(LinkStatus.BUSY)
        await trio.sleep(60)  # a minute-long render
        assert link.snapshot.status is LinkStatus.BUSY
        assert link.snapshot.busy_for_ms == 3000.0
        assert LinkStatus.DISCONNECTED not in [status for _, status in recorder.changes]
        fake.busy = False
        await recorder.wait_for(LinkStatus.CONNECTED)
        nursery.cancel_scope.cancel()


async def test_reconnects_after_socket_close_and_reattaches_session(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = FakeAddon()
    async with trio.open_nursery() as nursery:
        link, recorder = await start_link(nursery, fake, reconnect_initial_s=0.1)
        await link.attach("scene-20260101-000000-0000abcd", "demo")
        assert fake.session_id == "scene-20260101-000000-0000abcd"
        fake.session_id = None  # a fresh Blender knows no session
        lost_at = trio.current_time()
        await fake.drop_connections()
        assert await recorder.wait_for(LinkStatus.DISCONNECTED) == lost_at
        back_at = await recorder.wait_for(LinkStatus.CONNECTED)
        assert 0.05 <= back_at - lost_at <= 0.1  # first backoff: equal jitter in [0.05, 0.1]
        assert fake.connections == 2
        assert fake.session_id == "scene-20260101-000000-0000abcd"
        nursery.cancel_scope.cancel()


async def test_reconnect_backoff_grows_and_is_capped(autojump_clock: trio.abc.Clock) -> None:
    attempts: list[float] = []

    async def refuse(host: str, port: int) -> trio.abc.Stream:
        attempts.append(trio.current_time())
        raise OSError(111, "Connection refused")

    link = AddonLink(
        LinkConfig(reconnect_initial_s=0.1, reconnect_max_s=2.0),
        connect=refuse,
        jitter=random.Random(1),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        await trio.sleep(30)  # virtual time: enough for ten attempts at the 2 s cap
        nursery.cancel_scope.cancel()
    assert len(attempts) >= 10
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for failures, gap in enumerate(gaps):
        ceiling = min(2.0, 0.1 * 2**failures)
        assert ceiling / 2 <= gap <= ceiling
    assert max(gaps) <= 2.0
    assert link.snapshot.status is LinkStatus.DISCONNECTED
    assert "Connection refused" in link.snapshot.last_error


async def test_an_unreachable_blender_is_logged_now_and_then(
    autojump_clock: trio.abc.Clock,
) -> None:
    attempts = 0

    async def refuse(host: str, port: int) -> trio.abc.Stream:
        nonlocal attempts
        attempts += 1
        raise OSError(111, "Connection refused")

    link = AddonLink(LinkConfig(unreachable_log_interval_s=60.0), connect=refuse)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            await trio.sleep(150)  # virtual time: dozens of attempts
            nursery.cancel_scope.cancel()
    said = [entry for entry in logs if entry["event"] == "link_unreachable"]
    assert attempts > 20
    assert len(said) == 3  # at 0, 60 and 120 s: not at every attempt
    assert [round(entry["for_s"] / 60) for entry in said] == [0, 1, 2]
    assert "Connection refused" in said[0]["reason"]


async def test_request_without_blender_is_blender_unavailable(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def refuse(host: str, port: int) -> trio.abc.Stream:
        raise OSError(111, "Connection refused")

    link = AddonLink(LinkConfig(), connect=refuse)
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        with pytest.raises(RemoteProtocolError) as caught:
            await link.request("get_state")
        assert caught.value.code is ErrorCode.BLENDER_UNAVAILABLE
        assert "127.0.0.1:9876" in caught.value.message
        nursery.cancel_scope.cancel()


async def test_request_times_out_with_clear_error(autojump_clock: trio.abc.Clock) -> None:
    fake = FakeAddon(command_delay_s=100.0)
    async with trio.open_nursery() as nursery:
        link, _ = await start_link(nursery, fake, request_timeout_s=30.0)
        began = trio.current_time()
        with pytest.raises(RemoteProtocolError) as caught:
            await link.request("get_state")
        assert caught.value.code is ErrorCode.TIMEOUT
        assert trio.current_time() - began == 30.0
        nursery.cancel_scope.cancel()


async def test_pipelined_requests_each_get_their_own_answer(autojump_clock: trio.abc.Clock) -> None:
    fake = FakeAddon()
    results: dict[int, bytes] = {}
    async with trio.open_nursery() as nursery:
        link, _ = await start_link(nursery, fake)

        async def create(index: int) -> None:
            params = f'{{"kind": "cube", "name": "C{index}"}}'.encode()
            results[index] = await link.request("create_object", params)

        async with trio.open_nursery() as batch:
            for index in range(64):
                batch.start_soon(create, index)
        nursery.cancel_scope.cancel()
    assert all(f'"name": "C{i}"'.encode() in results[i] for i in range(64))


async def test_lost_connection_fails_pending_request(autojump_clock: trio.abc.Clock) -> None:
    fake = FakeAddon(command_delay_s=10.0)
    async with trio.open_nursery() as nursery:
        link, _ = await start_link(nursery, fake)

        async def drop_soon() -> None:
            await trio.sleep(1)  # virtual time: autojump_clock
            await fake.drop_connections()

        nursery.start_soon(drop_soon)
        with pytest.raises(RemoteProtocolError) as caught:
            await link.request("get_state")
        assert caught.value.code is ErrorCode.BLENDER_UNAVAILABLE
        assert "may or may not have run" in caught.value.message
        nursery.cancel_scope.cancel()


class BreakableStream(trio.abc.Stream):
    """A stream whose sends fail once `broken` is set, as a reset connection's do."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.broken = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.broken:
            raise trio.BrokenResourceError("connection reset by peer")
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_failed_send_ends_the_connection_fails_requests_and_reconnects(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = FakeAddon()
    streams: list[BreakableStream] = []
    async with trio.open_nursery() as nursery:

        async def connect(host: str, port: int) -> trio.abc.Stream:
            streams.append(BreakableStream(await fake.connect(host, port, nursery=nursery)))
            return streams[-1]

        recorder = Recorder()
        link = AddonLink(LinkConfig(), recorder, connect=connect, jitter=random.Random(7))
        await nursery.start(link.run)
        await recorder.wait_for(LinkStatus.CONNECTED)
        streams[0].broken = True
        with pytest.raises(RemoteProtocolError) as caught:
            await link.request("get_state")
        assert caught.value.code is ErrorCode.BLENDER_UNAVAILABLE
        assert recorder.changes[-1][1] is LinkStatus.DISCONNECTED
        assert "connection reset by peer" in link.snapshot.last_error
        await recorder.wait_for(LinkStatus.CONNECTED)  # a new connection, after backoff
        assert len(streams) == 2
        assert await link.request("get_state")
        nursery.cancel_scope.cancel()


# --- a frozen Blender, late answers, hostile addons ------------------------------------


class Outcomes:
    """Collects what `submit` delivers, and late answers."""

    def __init__(self) -> None:
        self.delivered: list[object] = []
        self.late: list[object] = []
        self.changed = trio.Event()

    def deliver(self, outcome: object) -> None:
        self.delivered.append(outcome)
        self.changed.set()
        self.changed = trio.Event()

    def on_late(self, answer: object) -> None:
        self.late.append(answer)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self.changed.wait()


async def test_frozen_blender_answers_senders_at_the_timeout_then_late_answers_are_kept(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A SIGSTOPped Blender: dead at exactly the heartbeat timeout, senders told at once
    (no 60 s wait), the connection kept; thawed, it answers, and the answer arrives
    late, on the same connection."""
    fake = FakeAddon()
    async with trio.open_nursery() as nursery:
        link, recorder = await start_link(
            nursery, fake, heartbeat_interval_s=1.0, heartbeat_timeout_s=5.0
        )
        outcomes = Outcomes()
        await trio.sleep(0.5)  # between pongs: the last came at t=0
        fake.freeze()
        link.submit("create_object", b'{"kind": "cube", "name": "Frozen"}', outcomes.deliver,
                    outcomes.on_late)  # fmt: skip
        dead_at = await recorder.wait_for(LinkStatus.DISCONNECTED)
        assert dead_at == 0.0 + 5.0  # 5 s after the last pong (t=0)
        assert outcomes.delivered == [NoAnswer.STOPPED_ANSWERING]
        with pytest.raises(RemoteProtocolError) as refused:
            link.submit("get_state", b"{}", outcomes.deliver)
        assert refused.value.code is ErrorCode.BLENDER_UNAVAILABLE
        await trio.sleep(30)
        fake.thaw()
        await recorder.wait_for(LinkStatus.CONNECTED)
        await outcomes.wait_for(lambda: bool(outcomes.late))
        (late,) = outcomes.late
        assert isinstance(late, LinkSuccess) and b"Frozen" in bytes(late.result)
        assert "Frozen" in fake.objects and fake.connections == 1
        nursery.cancel_scope.cancel()


async def test_request_timeout_then_the_answer_arrives_late(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = FakeAddon(command_delay_s=100.0)
    async with trio.open_nursery() as nursery:
        link, _ = await start_link(nursery, fake, request_timeout_s=30.0)
        outcomes = Outcomes()
        began = trio.current_time()
        link.submit("get_scene_info", b"{}", outcomes.deliver, outcomes.on_late)
        await outcomes.wait_for(lambda: bool(outcomes.delivered))
        assert outcomes.delivered == [NoAnswer.TIMED_OUT]
        assert trio.current_time() - began == 30.0
        await outcomes.wait_for(lambda: bool(outcomes.late))
        assert trio.current_time() - began == 100.0
        assert isinstance(outcomes.late[0], LinkSuccess)
        nursery.cancel_scope.cancel()


async def test_a_pong_the_daemon_cannot_read_keeps_the_link_alive(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The fuzz campaign's kill (b): `{"status": "success", "result": {}}` as a pong."""
    fake = FakeAddon(raw_results={"ping": b"{}"})
    async with trio.open_nursery() as nursery:
        link, recorder = await start_link(nursery, fake, heartbeat_timeout_s=5.0)
        await trio.sleep(60)
        assert link.connected and fake.connections == 1
        assert LinkStatus.DISCONNECTED not in [status for _, status in recorder.changes]
        nursery.cancel_scope.cancel()


async def test_an_unreadable_echo_in_pongs_keeps_a_healthy_link(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Item 18: a lone surrogate echoed in every pong must not end the link."""
    fake = FakeAddon(raw_results={
        "ping": b'{"pong": true, "session_id": "\\ud800", '
                b'"main_thread": {"busy": false, "busy_for_ms": 0, "queue_depth": 0}}'
    })  # fmt: skip
    async with trio.open_nursery() as nursery:
        link, _ = await start_link(nursery, fake)
        await trio.sleep(30)
        assert link.connected and fake.connections == 1
        assert await link.request("get_state")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\n" * 100_000,
        b"\n" * (16 * 1024 * 1024),
        b"not json at all\n",
        b'{"status": "error", "code": "bad_request", "message": "no id"}\n',
        b"[" * 20_000 + b"\n",
    ],
    ids=["100k-blank-lines", "16MiB-newlines", "garbage", "id-less-error", "deep"],
)
async def test_nothing_the_addon_sends_ends_more_than_its_connection(
    autojump_clock: trio.abc.Clock, garbage: bytes
) -> None:
    fake = FakeAddon()
    async with trio.open_nursery() as nursery:
        link, _ = await start_link(nursery, fake)
        await fake.inject(garbage)
        await trio.sleep(5)
        assert link.connected  # blank lines change nothing; the rest: reconnected
        assert await link.request("get_state")
        nursery.cancel_scope.cancel()


async def test_hello_and_a_bad_line_in_one_write_is_contained(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The fuzz campaign's kill (c): a valid hello reply and a bad line together."""
    attempts: list[int] = []

    async def connect(host: str, port: int) -> trio.abc.Stream:
        ours, theirs = trio.testing.memory_stream_pair()

        async def peer() -> None:
            data = b""
            while b"\n" not in data:
                data += await theirs.receive_some()
            hello = (
                b'{"id": 1, "status": "success", "result": {"protocol": 1, "addon_version": "x",'
                b' "blender_version": "5", "file": "", "scene": "S", "commands": []}}\n'
            )
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await theirs.send_all(hello + b"GARBAGE\n")
                await trio.sleep_forever()

        attempts.append(1)
        nursery.start_soon(peer)
        return ours

    async with trio.open_nursery() as nursery:
        link = AddonLink(LinkConfig(), connect=connect, jitter=random.Random(3))
        await nursery.start(link.run)
        await trio.sleep(10)
        assert len(attempts) >= 2  # it reconnects after each failure: the link lives on
        assert not link.connected
        nursery.cancel_scope.cancel()


async def test_a_new_blender_instance_is_reported_on_reconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = FakeAddon(instance_id="first")
    async with trio.open_nursery() as nursery:
        link, recorder = await start_link(nursery, fake)
        fake.instance_id = "second"  # a new Blender on the same port
        await fake.drop_connections()
        await recorder.wait_for(LinkStatus.DISCONNECTED)
        await recorder.wait_for(LinkStatus.CONNECTED)
        assert recorder.instances == [("", "first"), ("first", "second")]
        assert link.info().instance_id == "second"
        nursery.cancel_scope.cancel()


async def test_a_ping_the_peer_never_answers_does_not_keep_the_link_silent_for_good(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Found by the link fuzz campaign: a peer that drops (or misanswers) one ping. The
    link goes silent at the timeout, pings again, and is alive at the next pong, on the
    same connection."""
    fake = FakeAddon()
    async with trio.open_nursery() as nursery:
        link, recorder = await start_link(
            nursery, fake, heartbeat_interval_s=1.0, heartbeat_timeout_s=5.0
        )
        await trio.sleep(0.5)
        fake.drop_next.add("ping")
        silent_at = await recorder.wait_for(LinkStatus.DISCONNECTED)
        back_at = await recorder.wait_for(LinkStatus.CONNECTED)
        assert silent_at == 0.0 + 5.0  # the last pong came at t=0; the ping at t=1 was lost
        assert back_at == silent_at  # a fresh ping, answered at once
        assert fake.connections == 1 and link.connected
        nursery.cancel_scope.cancel()
