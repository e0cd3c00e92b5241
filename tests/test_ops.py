"""Every control op through the daemon's port: the happy path and its errors.
Real loopback sockets; the Blender side is the fake addon (the real addon is exercised
in test_e2e.py and test_addon_*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
import trio
from structlog.testing import capture_logs

from daemon.main import Daemon

from .fake_addon import FakeAddon
from .helpers import (
    WAIT_S,
    AsyncClient,
    create_cube,
    ready_client,
    running_daemon,
    token_of,
)


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
    found = await client.ok("session.list", {"text": "BOX"})  # an object's name
    assert [s["session_id"] for s in found["sessions"]] == [session_id]
    assert (await client.ok("session.list", {"text": "nothing like it"}))["sessions"] == []
    code, _ = await client.error("session.list", {"text": "box", "cursor": "x"})
    assert code == "invalid_params"  # a search is one page
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
    assert deleted["removed"] == [f"{session_id}.json", f"{session_id}.steps"]


async def test_free_form_data_persists_survives_restart_and_comes_back_on_restore(
    tmp_path: Path, fake: FakeAddon
) -> None:
    data_dir = tmp_path / "data"
    value = {"notes": ["chair", {"legs": 4}], "ok": True, "ratio": 0.5}
    async with running_daemon(data_dir, fake.port) as first:
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
    async with running_daemon(data_dir, fake.port) as second:
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


async def test_several_blenders_each_session_bound_to_one(
    tmp_path: Path, fake: FakeAddon, nursery: trio.Nursery
) -> None:
    second = FakeAddon(blender_version="4.2.0")
    second_port = await nursery.start(second.serve_tcp)
    async with running_daemon(
        tmp_path / "data",
        fake.port,
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
