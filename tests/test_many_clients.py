"""Many clients and pipelines through the one command path: each gets exactly its own
replies, a client that stops reading stalls only itself, limits answer `busy`, and no
record is lost when clients hang up, Blender is slow, or a caller goes away."""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec
import trio
import trio.testing

from daemon.main import Daemon

from .fake_addon import FakeAddon
from .helpers import (
    WAIT_S,
    AsyncClient,
    create_cube,
    ready_client,
    recorded_commands,
    running_daemon,
    token_of,
)


async def test_client_that_stops_reading_does_not_stall_others(
    daemon: Daemon, client: AsyncClient
) -> None:
    assert daemon.control_port is not None
    session_id = (await client.ok("session.open"))["session_id"]
    hog = await trio.open_tcp_stream("127.0.0.1", daemon.control_port)
    token = token_of(daemon).encode()
    request = b'{"op": "session.show", "token": "%s", "params": {"session_id": "%s"}}\n' % (
        token,
        session_id.encode(),
    )

    async def flood() -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                await hog.send_all(request * 100)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        with trio.fail_after(WAIT_S):  # the daemon stops reading from the hog
            while not any(c.stalled.is_set() for c in daemon.control.connections):
                await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        nursery.cancel_scope.cancel()
    with trio.fail_after(WAIT_S):
        for _ in range(20):
            await client.ok("session.command", {"session_id": session_id, "type": "get_state"})
    await trio.aclose_forcefully(hog)


async def test_pipelined_requests_from_many_clients_get_their_own_replies(
    daemon: Daemon, client: AsyncClient
) -> None:
    assert daemon.control_port is not None
    session_id = (await client.ok("session.open"))["session_id"]

    async def one_client(index: int) -> None:
        other = await AsyncClient.connect(
            daemon.control_port, token_of(daemon), f"01JCLIENT{index:016d}"
        )
        ids = [
            await other.send(
                "session.command",
                create_cube(session_id, f"c{index}-{n}"),
            )
            for n in range(25)
        ]
        replies = {}
        for _ in ids:
            reply = await other.receive()
            assert reply.error is None, reply.error
            replies[reply.id] = msgspec.json.decode(reply.result)["result"]["name"]
        assert replies == {request_id: f"c{index}-{n}" for n, request_id in enumerate(ids)}
        await other.aclose()

    with trio.fail_after(WAIT_S * 3):
        async with trio.open_nursery() as nursery:
            for index in range(10):
                nursery.start_soon(one_client, index)
    closed = await client.ok("session.close", {"session_id": session_id})
    commands = recorded_commands(closed)
    assert sorted(c["seq"] for c in commands) == list(range(1, 251))


async def test_client_over_its_in_flight_limit_gets_busy_others_do_not(
    tmp_path: Path, fake: FakeAddon
) -> None:
    fake.command_delay_s = 0.5
    async with running_daemon(
        tmp_path / "data",
        fake.port,
        max_in_flight_per_client=4,
    ) as daemon:
        with trio.fail_after(WAIT_S):
            await daemon.link.wait_connected()
        assert daemon.control_port is not None
        greedy = await AsyncClient.connect(daemon.control_port, token_of(daemon), "01JGREEDY")
        other = await AsyncClient.connect(daemon.control_port, token_of(daemon), "01JOTHER")
        session_id = (await other.ok("session.open"))["session_id"]
        command = {"session_id": session_id, "type": "get_state"}
        for _ in range(6):
            await greedy.send("session.command", command)
        with trio.fail_after(WAIT_S):
            replies = [await greedy.receive() for _ in range(6)]
            assert (await other.ok("session.command", command))["status"] == "success"
        codes = sorted(r.error.code if r.error else "ok" for r in replies)
        assert codes == ["busy", "busy", "ok", "ok", "ok", "ok"]
        busy = next(r.error for r in replies if r.error)
        assert busy is not None and "4 requests in flight" in busy.message
        with trio.fail_after(WAIT_S):  # once answered, the client may send again
            assert (await greedy.ok("session.command", command))["status"] == "success"
        await greedy.aclose()
        await other.aclose()


async def test_close_waits_for_pipelined_commands_in_flight_and_records_them(
    daemon: Daemon, client: AsyncClient, fake: FakeAddon
) -> None:
    session_id = (await client.ok("session.open"))["session_id"]
    fake.command_delay_s = 0.2  # still in Blender when the close arrives
    ids = [
        await client.send(
            "session.command",
            create_cube(session_id, f"P{n}"),
        )
        for n in range(10)
    ]
    closer = await ready_client(daemon, client_id="01JTESTCLOSER000000000000")
    with trio.fail_after(WAIT_S):
        closed = await closer.ok("session.close", {"session_id": session_id})
        replies = {(reply := await client.receive()).id: reply for _ in ids}
    assert all(replies[i].ok for i in ids)
    commands = recorded_commands(closed)
    assert [c["params"]["name"] for c in commands] == [f"P{n}" for n in range(10)]
    assert closed["command_count"] == 10
    await closer.aclose()


async def test_client_that_hangs_up_mid_pipeline_loses_no_record(
    daemon: Daemon, client: AsyncClient, fake: FakeAddon
) -> None:
    session_id = (await client.ok("session.open"))["session_id"]
    fake.command_delay_s = 0.1
    leaver = await ready_client(daemon, client_id="01JTESTLEAVER000000000000")
    for n in range(20):
        await leaver.send(
            "session.command",
            create_cube(session_id, f"L{n}"),
        )
    await leaver.aclose()  # gone before any answer
    with trio.fail_after(WAIT_S):
        closed = await client.ok("session.close", {"session_id": session_id})
    commands = recorded_commands(closed)
    assert [(c["params"]["name"], c["status"]) for c in commands] == [
        (f"L{n}", "success") for n in range(20)
    ]
    assert (await client.ok("status"))["blender"]["connected"]


async def test_a_command_blender_answers_after_the_timeout_is_unknown_then_takes_its_outcome(
    tmp_path: Path, fake: FakeAddon
) -> None:
    """Never `error` for a command Blender may still run: `unknown` at the timeout, the
    real outcome when it comes (marked late), and a `command_late` event."""
    async with running_daemon(
        tmp_path / "data",
        fake.port,
        request_timeout_s=0.5,
        heartbeat_timeout_s=30.0,
    ) as daemon:
        client = await ready_client(daemon)
        session_id = (await client.ok("session.open"))["session_id"]
        fake.command_delay_s = 2.0  # longer than the request timeout
        params = {"session_id": session_id, "type": "get_scene_info"}
        with daemon.service.events.subscribe() as events:
            with trio.fail_after(WAIT_S):
                code, message = await client.error("session.command", params)
            assert code == "timeout" and "did not answer 'get_scene_info' within 0.5 s" in message
            assert "record will show its outcome" in message
            shown = await client.ok("session.show", {"session_id": session_id})
            assert [c["status"] for c in shown["data"]["commands"]] == ["unknown"]
            with trio.fail_after(WAIT_S):
                async for event, data in events:
                    if event == "command_late":
                        assert msgspec.json.decode(data)["status"] == "success"
                        break
        fake.command_delay_s = 0.0
        with trio.fail_after(WAIT_S):
            assert (await client.ok("session.command", params))["seq"] == 2
            closed = await client.ok("session.close", {"session_id": session_id})
        commands = recorded_commands(closed)
        assert [(c["seq"], c["status"], c["late"]) for c in commands] == [
            (1, "success", True),
            (2, "success", False),
        ]
        await client.aclose()


async def test_a_caller_that_goes_away_mid_command_still_gets_its_outcome_recorded(
    daemon: Daemon, client: AsyncClient, fake: FakeAddon
) -> None:
    """The async path (proxy, names): the command left, so its outcome is kept even
    when the caller is cancelled while Blender works on it."""
    await client.ok("session.open", {"name": "patient"})
    fake.command_delay_s = 0.3
    with trio.move_on_after(0.05):  # the caller gives up while Blender works on it
        await daemon.service.command(
            "patient", "create_object", msgspec.Raw(b'{"kind": "cube", "name": "Late"}'), None
        )
    fake.command_delay_s = 0.0
    with trio.fail_after(WAIT_S):
        closed = await client.ok("session.close", {"session_id": "patient"})
    commands = recorded_commands(closed)
    assert [(c["params"]["name"], c["status"]) for c in commands] == [("Late", "success")]
