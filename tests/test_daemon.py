"""The daemon through its control port: auth, every op's happy path and its errors,
many clients. Real loopback sockets; the Blender side is the fake addon (the real
addon is exercised in test_e2e.py and test_addon_*.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
import trio
from structlog.testing import capture_logs

from daemon.main import Daemon

from .fake_addon import FakeAddon
from .helpers import AsyncClient, ready_client, running_daemon, token_of

# The bound for every wait in these tests (trio clock; real sockets on loopback).
WAIT_S = 10


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeAddon:
    fake = FakeAddon()
    fake.port = await nursery.start(fake.serve_tcp)  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def daemon(tmp_path: Path, fake: FakeAddon) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path / "data", fake.port) as daemon:  # type: ignore[attr-defined]
        with trio.fail_after(WAIT_S):
            await daemon.link.wait_connected()
        yield daemon


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[AsyncClient]:
    assert daemon.control_port is not None
    client = await AsyncClient.connect(daemon.control_port, token_of(daemon))
    yield client
    await client.aclose()


def create_cube(session_id: str, name: str) -> dict[str, Any]:
    """session.command params that make a cube named `name`."""
    return {"session_id": session_id, "type": "create_object",
            "params": {"kind": "cube", "name": name}}  # fmt: skip


def recorded_commands(closed: dict[str, Any]) -> list[dict[str, Any]]:
    """The commands of the record a session.close reply points to."""
    commands: list[dict[str, Any]] = msgspec.json.decode(Path(closed["path"]).read_bytes())["data"][
        "commands"
    ]
    return commands


async def raw_exchange(port: int, data: bytes) -> list[Any]:
    """Send raw bytes while reading replies until the daemon closes the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = bytearray()

    async def send() -> None:
        try:
            await stream.send_all(data)
            await stream.send_eof()
        except trio.BrokenResourceError:
            pass  # the daemon closed on us mid-send: what it said is what matters

    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                while chunk := await stream.receive_some(65536):
                    received.extend(chunk)
            except trio.BrokenResourceError:
                pass
    await stream.aclose()
    return [msgspec.json.decode(line) for line in bytes(received).splitlines()]


# --- auth -----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 10_000])
async def test_missing_or_wrong_token_is_unauthorized_and_nothing_else(
    daemon: Daemon, token: str | None
) -> None:
    assert daemon.control_port is not None
    request: dict[str, Any] = {"id": 1, "op": "session.list"}
    if token is not None:
        request["token"] = token
    replies = await raw_exchange(daemon.control_port, msgspec.json.encode(request) + b"\n")
    assert replies == [
        {"id": 1, "ok": False, "error": {"code": "unauthorized", "message": "unauthorized"}}
    ]


async def test_malformed_line_without_token_says_only_unauthorized(daemon: Daemon) -> None:
    assert daemon.control_port is not None
    replies = await raw_exchange(daemon.control_port, b"{not json\n")
    assert replies[0]["error"] == {"code": "unauthorized", "message": "unauthorized"}


async def test_malformed_line_with_token_gets_bad_request_and_connection_goes_on(
    daemon: Daemon,
) -> None:
    assert daemon.control_port is not None
    token = token_of(daemon)
    data = (
        b'{"id": 1, "op": 7, "token": "%s"}\n' % token.encode()
        + b'{"id": 2, "op": "status", "token": "%s"}\n' % token.encode()
    )
    first, second = await raw_exchange(daemon.control_port, data)
    assert first["id"] == 1 and first["error"]["code"] == "bad_request"
    assert second["id"] == 2 and second["ok"] is True


async def test_oversized_frame_is_bad_request_then_close_and_daemon_serves_on(
    daemon: Daemon, client: AsyncClient
) -> None:
    assert daemon.control_port is not None
    replies = await raw_exchange(daemon.control_port, b"{" + b" " * (17 * 1024 * 1024))
    assert replies[0]["error"]["code"] == "bad_request"
    assert "over the limit" in replies[0]["error"]["message"]
    assert (await client.ok("status"))["blender"]["connected"] is True


# --- ops: happy paths -----------------------------------------------------------------


async def test_session_lifecycle_through_every_op(
    daemon: Daemon, client: AsyncClient, fake: FakeAddon
) -> None:
    status = await client.ok("status")
    assert status["blender"]["connected"] and status["blender"]["blender_version"] == "5.0.1"
    opened = await client.ok("session.open", {"name": "demo"})
    session_id = opened["session_id"]
    assert opened["created"] and fake.session_id == session_id  # attached in the addon
    done = await client.ok(
        "session.command",
        {"session_id": "demo", "type": "create_object", "params": {"kind": "cube", "name": "Box"}},
    )
    assert done["seq"] == 1 and done["status"] == "success" and done["result"]["name"] == "Box"
    state = await client.ok("session.state", {"session_id": session_id})
    assert [o["name"] for o in state["scene"]["objects"]] == ["Box"]
    listed = await client.ok("session.list")
    assert [(s["session_id"], s["status"]) for s in listed["sessions"]] == [(session_id, "open")]
    shown = await client.ok("session.show", {"session_id": "demo"})
    assert shown["status"] == "open" and shown["data"]["commands"][0]["type"] == "create_object"
    closed = await client.ok("session.close", {"session_id": session_id})
    assert closed["path"].endswith(f"{session_id}.json") and closed["snapshot_fresh"]
    assert not (daemon.store.sessions_dir / f"{session_id}.journal").exists()
    record = msgspec.json.decode(Path(closed["path"]).read_bytes())
    assert record["data"]["state"]["objects"] == ["Box"]
    assert record["data"]["command_count"] == 1
    stats = await client.ok("session.stats")
    assert stats["session_count"] == 1 and stats["command_count"] == 1
    fake.objects.clear()
    restored = await client.ok("session.restore", {"session_id": "demo", "name": "again"})
    assert restored["restored_from"] == session_id and restored["created"] == ["Box"]
    assert restored["path"] == "state"
    assert "Box" in fake.objects
    new_record = await client.ok("session.show", {"session_id": "again"})
    assert new_record["data"]["restored_from"] == session_id
    await client.ok("session.close", {"session_id": "again"})
    deleted = await client.ok("session.delete", {"session_id": session_id})
    assert deleted["removed"] == [f"{session_id}.json"]


async def test_free_form_data_persists_survives_restart_and_comes_back_on_restore(
    tmp_path: Path, fake: FakeAddon
) -> None:
    data_dir = tmp_path / "data"
    value = {"notes": ["chair", {"legs": 4}], "ok": True, "ratio": 0.5}
    async with running_daemon(data_dir, fake.port) as first:  # type: ignore[attr-defined]
        client = await ready_client(first)
        session_id = (await client.ok("session.open", {"name": "with-data"}))["session_id"]
        await client.ok(
            "session.set_data", {"session_id": session_id, "key": "brief", "value": value}
        )
        await client.ok("session.set_data", {"session_id": session_id, "key": "tmp", "value": 1})
        result = await client.ok(
            "session.set_data", {"session_id": session_id, "key": "tmp", "value": None}
        )
        assert result["keys"] == ["brief"]
        code, message = await client.error(
            "session.set_data", {"session_id": session_id, "key": "", "value": 1}
        )
        assert code == "invalid_params" and "$.key" in message
        code, _ = await client.error("session.set_data", {"session_id": session_id, "key": "k"})
        assert code == "invalid_params"
        await client.aclose()
    # A daemon stopped without closing: the data comes back from the journal.
    async with running_daemon(data_dir, fake.port) as second:  # type: ignore[attr-defined]
        client = await ready_client(second)
        closed = await client.ok("session.close", {"session_id": session_id})
        record = msgspec.json.decode(Path(closed["path"]).read_bytes())
        assert record["data"]["data"] == {"brief": value}
        restored = await client.ok("session.restore", {"session_id": session_id})
        shown = await client.ok("session.show", {"session_id": restored["session_id"]})
        assert shown["data"]["data"] == {"brief": value}
        await client.aclose()


async def test_open_with_client_chosen_id_is_idempotent(client: AsyncClient) -> None:
    chosen = "scene-20260101-120000-0000abcd"
    first = await client.ok("session.open", {"session_id": chosen})
    again = await client.ok("session.open", {"session_id": chosen})
    assert (first["created"], again["created"]) == (True, False)
    assert (await client.ok("session.list"))["sessions"][0]["session_id"] == chosen


async def test_command_records_seq_client_and_timing(daemon: Daemon, client: AsyncClient) -> None:
    session_id = (await client.ok("session.open"))["session_id"]
    for index in range(3):
        await client.ok(
            "session.command",
            create_cube(session_id, f"C{index}"),
        )
    await client.error(
        "session.command",
        {"session_id": session_id, "type": "delete_object", "params": {"name": "missing"}},
    )
    path = Path((await client.ok("session.close", {"session_id": session_id}))["path"])
    data = msgspec.json.decode(path.read_bytes())["data"]
    commands = data["commands"]
    assert [c["seq"] for c in commands] == [1, 2, 3, 4]
    assert [c["status"] for c in commands] == ["success"] * 3 + ["error"]
    assert commands[3]["error"]["code"] == "not_found"
    assert all(c["client_id"] == "01JTESTCLIENT000000000000" for c in commands)
    assert all(c["duration_ms"] >= 0 for c in commands)
    assert data["state"]["last_command"] == "delete_object"
    assert data["state"]["last_result"]["status"] == "error"
    assert data["command_count"] == 4


async def test_watch_streams_session_and_command_events(
    daemon: Daemon, client: AsyncClient
) -> None:
    assert daemon.control_port is not None
    watcher = await AsyncClient.connect(daemon.control_port, token_of(daemon))
    await watcher.send("watch")
    with trio.fail_after(WAIT_S):
        first = await watcher.receive()
        assert first.event == "watching"
        session_id = (await client.ok("session.open"))["session_id"]
        await client.ok("session.command", {"session_id": session_id, "type": "get_state"})
        seen: list[str | None] = []
        while not {"command", "heartbeat"} <= set(seen):
            seen.append((await watcher.receive()).event)
    assert seen.index("session_opened") < seen.index("command")
    await watcher.aclose()


async def test_command_logs_one_canonical_line_with_bound_ids(client: AsyncClient) -> None:
    session_id = (await client.ok("session.open"))["session_id"]
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await client.ok("session.command", {"session_id": session_id, "type": "get_state"})
    done = [entry for entry in logs if entry["event"] == "command_done"]
    assert len(done) == 1
    assert done[0]["session_id"] == session_id
    assert done[0]["client_id"] == "01JTESTCLIENT000000000000"
    assert done[0]["seq"] == 1 and done[0]["status"] == "success" and "duration_ms" in done[0]


# --- ops: errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "params", "code", "fragment"),
    [
        ("session.nope", {}, "unknown_command", "unknown op 'session.nope'"),
        ("session.export", {"path": "relative.tar.gz"}, "invalid_params", "$.path"),
        ("session.export", {"path": "/tmp/x.tar.gz"}, "invalid_params", "name the sessions"),
        ("session.import", {"path": "/nonexistent/a.tar.gz"}, "not_found", "no archive"),
        ("session.set_data", {"session_id": "x", "key": "k", "value": 1}, "not_found", "x"),
        ("session.open", {"name": 5}, "invalid_params", "$.name"),
        ("session.open", {"session_id": "../../etc"}, "invalid_params", "expected scene-"),
        ("session.show", {"session_id": "scene-20260101-000000-0000abcd"}, "not_found", "list"),
        ("session.show", {"session_id": "../x"}, "invalid_params", "expected scene-"),
        ("session.show", {"session_id": "no-such-name"}, "not_found", "no session"),
        ("session.show", {}, "invalid_params", "session_id"),
        ("session.delete", {"session_id": "/etc/passwd"}, "invalid_params", "expected scene-"),
        ("session.close", {"session_id": "scene-20260101-000000-0000abcd"}, "not_found", ""),
        ("session.restore", {"session_id": "scene-20260101-000000-0000abcd"}, "not_found", ""),
        ("session.command", {"session_id": "x"}, "invalid_params", "type"),
        ("status", [], "invalid_params", "object"),
    ],
)
async def test_op_errors_are_structured(
    client: AsyncClient, op: str, params: Any, code: str, fragment: str
) -> None:
    got_code, message = await client.error(op, params)
    assert got_code == code
    assert fragment in message
    assert (await client.ok("status"))["pid"] > 0  # and the daemon keeps serving


async def test_command_errors_checked_before_blender(client: AsyncClient, fake: FakeAddon) -> None:
    session_id = (await client.ok("session.open"))["session_id"]
    before = len(fake.received)
    cases = [
        ("hello", {}, "unknown_command"),
        ("teleport", {}, "unknown_command"),
        ("create_object", {"kind": "blob"}, "invalid_params"),
        ("create_object", {"kind": "cube", "location": [1, 2]}, "invalid_params"),
        ("set_material", {"object": "A", "material": "M", "color": [2, 0, 0, 1]}, "invalid_params"),
    ]
    for kind, params, code in cases:
        got, _ = await client.error(
            "session.command", {"session_id": session_id, "type": kind, "params": params}
        )
        assert got == code
    assert len(fake.received) - before <= 2  # only heartbeats reached the addon


async def test_closed_and_open_sessions_refuse_the_wrong_ops(client: AsyncClient) -> None:
    session_id = (await client.ok("session.open", {"name": "one"}))["session_id"]
    assert (await client.error("session.open", {"name": "one"}))[0] == "conflict"
    assert (await client.error("session.delete", {"session_id": session_id}))[0] == "conflict"
    assert (await client.error("session.restore", {"session_id": session_id}))[0] == "conflict"
    await client.ok("session.close", {"session_id": session_id})
    code, message = await client.error(
        "session.command", {"session_id": session_id, "type": "get_state"}
    )
    assert code == "conflict" and "restore" in message
    assert (await client.error("session.open", {"session_id": session_id}))[0] == "conflict"


async def test_commands_when_blender_is_gone_get_a_clear_error(
    daemon: Daemon, client: AsyncClient, fake: FakeAddon
) -> None:
    session_id = (await client.ok("session.open"))["session_id"]
    fake.refuse = True
    await fake.drop_connections()
    with trio.fail_after(WAIT_S):
        await daemon.link.wait_until(lambda link: not link.connected)
    code, message = await client.error(
        "session.command", {"session_id": session_id, "type": "get_state"}
    )
    assert code == "blender_unavailable" and "blender-session blender" in message
    status = await client.ok("status")
    assert status["blender"]["connected"] is False
    # The session survives and closes with the last snapshot it has.
    closed = await client.ok("session.close", {"session_id": session_id})
    assert closed["snapshot_fresh"] is False
    record = msgspec.json.decode(Path(closed["path"]).read_bytes())
    assert record["data"]["blender"]["connected"] is False


# --- many clients ---------------------------------------------------------------------


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
    with trio.move_on_after(2):  # push until the socket buffers are full
        while True:
            await hog.send_all(request * 100)
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


# --- restart ----------------------------------------------------------------------------


async def test_open_session_survives_daemon_restart(tmp_path: Path, fake: FakeAddon) -> None:
    data_dir = tmp_path / "data"
    async with running_daemon(data_dir, fake.port) as first:  # type: ignore[attr-defined]
        client = await ready_client(first)
        session_id = (await client.ok("session.open", {"name": "kept"}))["session_id"]
        for index in range(5):
            await client.ok(
                "session.command",
                create_cube(session_id, f"K{index}"),
            )
        await client.aclose()
    # Stopped without closing: the journal stays and the next start recovers it.
    async with running_daemon(data_dir, fake.port) as second:  # type: ignore[attr-defined]
        client = await ready_client(second)
        listed = await client.ok("session.list")
        assert [(s["session_id"], s["status"], s["command_count"]) for s in listed["sessions"]] == [
            (session_id, "open", 5)
        ]
        done = await client.ok("session.command", {"session_id": "kept", "type": "get_state"})
        assert done["seq"] == 6
        closed = await client.ok("session.close", {"session_id": "kept"})
        record = msgspec.json.decode(Path(closed["path"]).read_bytes())
        assert [c["seq"] for c in record["data"]["commands"]] == [1, 2, 3, 4, 5, 6]
        await client.aclose()


async def test_client_over_its_in_flight_limit_gets_busy_others_do_not(
    tmp_path: Path, fake: FakeAddon
) -> None:
    fake.command_delay_s = 0.5
    async with running_daemon(
        tmp_path / "data",
        fake.port,  # type: ignore[attr-defined]
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


async def test_damaged_records_and_journals_are_quarantined_and_the_rest_served(
    tmp_path: Path, fake: FakeAddon
) -> None:
    data_dir = tmp_path / "data"
    sessions = data_dir / "sessions"
    async with running_daemon(data_dir, fake.port) as first:  # type: ignore[attr-defined]
        client = await ready_client(first)
        good = (await client.ok("session.open", {"name": "good"}))["session_id"]
        await client.ok("session.close", {"session_id": good})
        await client.aclose()
    good_record = (sessions / f"{good}.json").read_bytes()
    (sessions / "scene-20260101-000000-0000aaaa.json").write_bytes(good_record[:40])  # torn
    (sessions / "scene-20260101-000000-0000bbbb.json").write_bytes(b"\x00garbage\xff")
    (sessions / "scene-20260101-000000-0000cccc.json").write_bytes(
        b'{"format": 9, "session_id": "scene-20260101-000000-0000cccc", "data": {}}'
    )
    (sessions / "scene-20260101-000000-0000dddd.journal").write_bytes(b"not json\n{}\n")
    async with running_daemon(data_dir, fake.port) as second:  # type: ignore[attr-defined]
        assert second.control_port is not None
        client = await AsyncClient.connect(second.control_port, token_of(second))
        listed = await client.ok("session.list")
        assert [s["session_id"] for s in listed["sessions"]] == [good]
        damaged = {d["file"].split("-", 2)[-1]: d["reason"] for d in listed["damaged"]}
        assert set(damaged) == {
            "scene-20260101-000000-0000aaaa.json",
            "scene-20260101-000000-0000bbbb.json",
            "scene-20260101-000000-0000cccc.json",
            "scene-20260101-000000-0000dddd.journal",
        }
        assert "newer than this daemon reads" in damaged["scene-20260101-000000-0000cccc.json"]
        assert all(d["file"].startswith("quarantine/") for d in listed["damaged"])
        assert sorted(p.name for p in sessions.iterdir()) == [f"{good}.json"]
        assert len(list((data_dir / "quarantine").glob("*.reason.txt"))) == 4
        assert (await client.ok("session.show", {"session_id": good}))["data"]["name"] == "good"
        await client.aclose()


async def test_several_blenders_each_session_bound_to_one(
    tmp_path: Path, fake: FakeAddon, nursery: trio.Nursery
) -> None:
    second = FakeAddon(blender_version="4.2.0")
    second_port = await nursery.start(second.serve_tcp)
    async with running_daemon(
        tmp_path / "data",
        fake.port,  # type: ignore[attr-defined]
        extra_addon_ports=(second_port,),
    ) as daemon:
        with trio.fail_after(WAIT_S):
            for link in daemon.links:
                await link.wait_connected()
        assert daemon.control_port is not None
        client = await AsyncClient.connect(daemon.control_port, token_of(daemon))
        status = await client.ok("status")
        assert [b["blender_version"] for b in status["blenders"]] == ["5.0.1", "4.2.0"]
        first = await client.ok("session.open", {"name": "on-first"})
        other = await client.ok("session.open", {"name": "on-second", "blender": str(second_port)})
        assert other["blender"]["blender_version"] == "4.2.0"
        for session, name in ((first, "One"), (other, "Two")):
            await client.ok(
                "session.command",
                create_cube(session["session_id"], name),
            )
        assert list(fake.objects) == ["One"] and list(second.objects) == ["Two"]
        assert (fake.session_id, second.session_id) == (first["session_id"], other["session_id"])
        closed = await client.ok("session.close", {"session_id": "on-second"})
        record = msgspec.json.decode(Path(closed["path"]).read_bytes())["data"]
        assert record["blender"]["port"] == second_port
        assert record["blender"]["version"] == "4.2.0"
        code, message = await client.error("session.open", {"blender": "1"})
        assert code == "invalid_params" and str(second_port) in message
        await client.aclose()


@pytest.mark.parametrize(
    ("errno", "strerror"),
    [(28, "No space left on device"), (30, "Read-only file system")],
    ids=["disk-full", "read-only"],
)
async def test_full_or_read_only_disk_clear_errors_nothing_lost_next_close_persists_all(
    daemon: Daemon,
    client: AsyncClient,
    fake: FakeAddon,
    monkeypatch: pytest.MonkeyPatch,
    errno: int,
    strerror: str,
) -> None:
    """ENOSPC or EROFS injected at the write calls (no loop mounts on CI machines)."""
    import os as real_os

    from daemon.store import files, store

    real_atomic_write = store.atomic_write
    failing: set[bytes] = set()  # journal line kinds that hit a full disk

    class FullDiskOs:
        """`os` for the journal: a failing line gets half written, then the disk is full."""

        half_written = False

        def __getattr__(self, name: str) -> Any:
            return getattr(real_os, name)

        def write(self, fd: int, data: memoryview) -> int:
            if self.half_written:
                self.half_written = False
                raise OSError(errno, strerror)
            if any(kind in bytes(data) for kind in failing):
                self.half_written = True
                return real_os.write(fd, data[: len(data) // 2])
            return real_os.write(fd, data)

    def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
        if failing:
            raise OSError(errno, strerror, str(path))
        real_atomic_write(path, data, mode)

    monkeypatch.setattr(files, "os", FullDiskOs())
    monkeypatch.setattr(store, "atomic_write", atomic_write)
    session_id = (await client.ok("session.open"))["session_id"]

    def create(name: str) -> dict[str, Any]:
        return create_cube(session_id, name)

    await client.ok("session.command", create("Before"))
    failing.add(b'"kind":"done"')  # the outcome cannot be journaled: the command did run
    ran = await client.ok("session.command", create("Ran"))
    assert ran["status"] == "success" and "Ran" in fake.objects
    failing.add(b'"kind":"start"')  # nothing can be journaled: the command must not run
    code, message = await client.error("session.command", create("NotRun"))
    assert code == "storage" and strerror in message and "kept in memory" in message
    assert "NotRun" not in fake.objects
    code, _ = await client.error("session.close", {"session_id": session_id})
    assert code == "storage"
    assert (await client.ok("session.list"))["sessions"][0]["status"] == "open"
    failing.clear()  # space was freed; the half lines were cut off, so this one follows cleanly
    await client.ok("session.command", create("After"))
    closed = await client.ok("session.close", {"session_id": session_id})
    commands = recorded_commands(closed)
    assert [(c["params"]["name"], c["status"]) for c in commands] == [
        ("Before", "success"),
        ("Ran", "success"),
        ("After", "success"),
    ]
    journal_left = list(daemon.store.sessions_dir.glob("*.journal"))
    assert journal_left == []  # removed only once the record was safely written


# --- the fast path's edges ------------------------------------------------------------


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


async def test_pipelined_command_that_blender_never_answers_times_out(
    tmp_path: Path, fake: FakeAddon
) -> None:
    async with running_daemon(
        tmp_path / "data",
        fake.port,  # type: ignore[attr-defined]
        request_timeout_s=0.5,
        heartbeat_timeout_s=30.0,
    ) as daemon:
        client = await ready_client(daemon)
        session_id = (await client.ok("session.open"))["session_id"]
        fake.command_delay_s = 5.0  # longer than the request timeout
        params = {"session_id": session_id, "type": "get_scene_info"}
        with trio.fail_after(WAIT_S):
            code, message = await client.error("session.command", params)
        assert code == "timeout" and "did not answer 'get_scene_info' within 0.5 s" in message
        fake.command_delay_s = 0.0
        with trio.fail_after(WAIT_S):
            assert (await client.ok("session.command", params))["seq"] == 2
            closed = await client.ok("session.close", {"session_id": session_id})
        commands = recorded_commands(closed)
        assert [(c["seq"], c["status"]) for c in commands] == [(1, "error"), (2, "success")]
        assert commands[0]["error"]["code"] == "timeout"
        await client.aclose()


async def test_a_caller_that_goes_away_mid_command_still_gets_its_outcome_recorded(
    daemon: Daemon, client: AsyncClient, fake: FakeAddon
) -> None:
    """The async path (proxy, names): the command left, so its outcome is kept even
    when the caller is cancelled while Blender works on it."""
    await client.ok("session.open", {"name": "patient"})
    fake.command_delay_s = 0.3
    with trio.move_on_after(0.05):  # the caller gives up while Blender works on it
        await daemon.manager.command(
            "patient", "create_object", msgspec.Raw(b'{"kind": "cube", "name": "Late"}'), None
        )
    fake.command_delay_s = 0.0
    with trio.fail_after(WAIT_S):
        closed = await client.ok("session.close", {"session_id": "patient"})
    commands = recorded_commands(closed)
    assert [(c["params"]["name"], c["status"]) for c in commands] == [("Late", "success")]
