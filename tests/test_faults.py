"""The fault suite: the real programs and a real headless Blender, killed, flooded
and starved. What must hold: every acknowledged command is on disk, every reply
reaches the client that asked, and nothing stalls or dies that should not."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ulid import ULID

from daemon.clients.client import ClientError, ControlClient, find_endpoint

from .programs import Programs
from .streams import Counter, Stream, run_streams

pytestmark = pytest.mark.blender
JOIN_TIMEOUT_S = 300.0


def _create(session_id: str, prefix: str, number: int) -> dict[str, Any]:
    name = f"{prefix}-{number}"
    return {"session_id": session_id, "type": "create_object",
            "params": {"kind": "empty", "name": name}}  # fmt: skip


def _records(programs: Programs, session_id: str) -> list[dict[str, Any]]:
    closed = programs.json("close", session_id)
    commands: list[dict[str, Any]] = json.loads(Path(closed["path"]).read_text())["data"][
        "commands"
    ]
    return commands


def test_daemon_sigkilled_during_a_four_client_stream_keeps_every_acknowledged_command(
    programs: Programs,
) -> None:
    clients, each, window, kill_after = 4, 2500, 16, 4000  # a 10,000-command stream
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    sessions = [programs.json("open", "--name", f"stream-{n}")["session_id"] for n in range(2)]
    _, port, token = find_endpoint(programs.data_dir)
    acknowledged = Counter(kill_after)
    streams = [
        Stream(
            port,
            token,
            request=partial(_create, sessions[n % 2], f"c{n}"),
            total=each,
            window=window,
            on_reply=acknowledged.add,
        )
        for n in range(clients)
    ]
    threads = run_streams(streams)
    assert acknowledged.reached.wait(JOIN_TIMEOUT_S), "the stream did not get going"
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGKILL)  # mid-stream, 64 commands in flight
    programs.daemon.wait()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive()
    assert all(stream.ended_by is not None for stream in streams)  # cut off, not finished

    programs.start_daemon()
    programs.wait_connected()
    recorded: dict[str, dict[int, dict[str, Any]]] = {}
    for session_id in sessions:
        commands = _records(programs, session_id)
        seqs = [command["seq"] for command in commands]
        assert len(seqs) == len(set(seqs))
        recorded[session_id] = {command["seq"]: command for command in commands}
    names = [c["params"]["name"] for by_seq in recorded.values() for c in by_seq.values()]
    assert len(names) == len(set(names))  # no command recorded twice
    acked = 0
    for n, stream in enumerate(streams):
        assert stream.duplicates == []
        for number, reply in stream.replies.items():
            assert reply["ok"], reply
            command = recorded[reply["result"]["session_id"]][reply["result"]["seq"]]
            assert command["status"] == "success"
            assert command["params"]["name"] == f"c{n}-{number}"
            acked += 1
    assert acked >= kill_after
    print(f"killed after {acked} acknowledged; {len(names) - acked} more were recorded")
    # Beyond the acknowledged ones, only commands in flight at the kill were recorded.
    assert 0 <= len(names) - acked <= clients * window


def test_blender_sigkilled_then_a_new_blender_is_never_taken_for_the_same_one(
    programs: Programs,
) -> None:
    """Item 5: the new Blender's empty scene is not the session's. The daemon says so
    (status, the command's error, the record), records nothing more into the session
    as if nothing happened, and its close keeps the last state it recorded (with
    `--on-blender-restart mark`; the default brings the scene back: the next test)."""
    programs.start_blender()
    programs.start_daemon("--on-blender-restart", "mark")
    programs.wait_connected()
    session_id = programs.json("open", "--name", "survivor")["session_id"]
    programs.cli("cmd", "create_object", "kind=cube", "name=Before")
    host, port, token = find_endpoint(programs.data_dir)
    with ControlClient(host, port, token, timeout_s=30) as watcher:
        events = watcher.stream("watch")
        assert next(events).event == "watching"
        assert programs.blender is not None
        programs.blender.kill()
        killed_at = time.monotonic()
        for event in events:  # bounded by the client's 30 s socket timeout
            if event.event == "heartbeat":
                data = msgspec.json.decode(event.data)
                if not data["connected"]:
                    break
        noticed_s = time.monotonic() - killed_at
    assert noticed_s < programs.heartbeat_timeout_s, noticed_s
    with ControlClient(host, port, token) as client:
        params = {"session_id": session_id, "type": "get_scene_info"}
        with pytest.raises(ClientError) as refused:
            client.call("session.command", params)
        assert refused.value.code == "blender_unavailable"
        assert "blender-session blender" in str(refused.value)
        listed = msgspec.json.decode(client.call("session.list"))["sessions"]
        assert [(s["session_id"], s["status"]) for s in listed] == [(session_id, "open")]

    programs.start_blender()  # a new Blender on the same port
    programs.wait_connected()
    refused_cmd = programs.cli("cmd", "create_object", "kind=cube", "name=After", check=False)
    assert refused_cmd.returncode == 1
    assert "conflict" in refused_cmd.stderr and "restarted" in refused_cmd.stderr
    (listed,) = programs.json("status")["open_sessions"]
    assert listed["detached"] is not None and "restarted" in listed["detached"]
    closed = programs.json("close", session_id)
    record = json.loads(Path(closed["path"]).read_text())["data"]
    assert [(c["seq"], c["params"]["name"], c["status"]) for c in record["commands"]] == [
        (1, "Before", "success"),
    ]
    assert record["state"]["objects"] == ["Before"]  # not the new Blender's empty scene
    (restart,) = record["restarts"]
    assert restart["after_seq"] == 1 and restart["instance"] != restart["previous_instance"]
    assert closed["snapshot_fresh"] is False


def test_a_restarted_blender_gets_its_session_scene_back_before_anything_more(
    programs: Programs,
) -> None:
    """Time travel, item 7: by default a new Blender under an open session is brought
    back to the session's last step, a `restart` step says so, and the session goes on."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "phoenix")["session_id"]
    programs.cli("cmd", "create_object", "kind=monkey", "name=Before", "location=[1,2,3]")
    programs.cli("cmd", "set_material", "object=Before", "material=Red", "color=[1,0,0,1]")
    before = programs.json("state")["scene"]["objects"]
    assert programs.blender is not None
    programs.blender.kill()
    programs.start_blender()  # a new Blender on the same port, with an empty scene
    programs.wait_connected()
    host, port, token = find_endpoint(programs.data_dir)
    with ControlClient(host, port, token) as client:
        for _ in range(600):  # each look is a round trip to the daemon
            timeline = msgspec.json.decode(
                client.call("session.timeline", {"session_id": session_id})
            )
            restarts = [e for e in timeline["entries"] if e["kind"] == "restart"]
            if restarts:
                break
        else:
            raise AssertionError("the restart never reached the timeline")
        assert restarts[0]["status"] == "success", restarts
        assert restarts[0]["seq"] == 3
    assert programs.json("state")["scene"]["objects"] == before
    programs.cli("cmd", "create_object", "kind=cube", "name=After")
    closed = programs.json("close", session_id)
    record = json.loads(Path(closed["path"]).read_text())["data"]
    assert [c["params"]["name"] for c in record["commands"] if c["type"] == "create_object"] == [
        "Before",
        "After",
    ]
    assert sorted(record["state"]["objects"]) == ["After", "Before"]
    (restart,) = record["restarts"]
    assert restart["resumed"] and restart["seq"] == 3 and restart["after_seq"] == 2


def test_fifty_clients_get_exactly_their_own_replies_while_one_stops_reading(
    programs: Programs,
) -> None:
    clients, each = 50, 1000
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "crowd")["session_id"]
    _, port, token = find_endpoint(programs.data_dir)
    scene_info = {"session_id": session_id, "type": "get_scene_info"}

    silent = socket.create_connection(("127.0.0.1", port))
    flood = b"".join(
        json.dumps(
            {"id": n, "op": "session.command", "token": token, "params": scene_info}
        ).encode()
        + b"\n"
        for n in range(each)
    )
    # It sends everything and never reads; sendall blocks once the daemon stops
    # reading from it, until the socket is shut down at the end.
    threading.Thread(target=_send_quietly, args=(silent, flood), daemon=True).start()

    streams = [
        Stream(
            port,
            token,
            request=lambda _number: scene_info,
            total=each,
            window=8,
            client_id=str(ULID()),
            first_id=n * each,
        )
        for n in range(clients)
    ]
    threads = run_streams(streams)
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive(), "a client stalled"
    seqs = []
    for stream in streams:
        assert stream.ended_by is None, stream.ended_by
        assert stream.duplicates == []
        assert sorted(stream.replies) == list(range(each))  # its own ids, each once
        for reply in stream.replies.values():
            assert reply["ok"] and reply["result"]["session_id"] == session_id, reply
            seqs.append(reply["result"]["seq"])
    assert len(set(seqs)) == clients * each  # fifty thousand distinct commands
    silent.shutdown(socket.SHUT_RDWR)
    silent.close()
    status = programs.json("status")
    assert status["open_sessions"][0]["command_count"] >= clients * each


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # shut down at the end of the test
        sock.sendall(data)


def test_damaged_and_newer_records_and_journals_are_quarantined_the_rest_served(
    programs: Programs,
) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    closed_id = programs.json("open", "--name", "closed")["session_id"]
    programs.cli("cmd", "create_object", "kind=cube", "name=Kept")
    programs.json("close", closed_id)
    open_id = programs.json("open", "--name", "crashed")["session_id"]
    programs.cli("cmd", "create_object", "kind=cone", "name=InFlight")
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGKILL)  # leaves the open session's journal
    programs.daemon.wait()

    sessions = programs.data_dir / "sessions"
    record = (sessions / f"{closed_id}.json").read_bytes()
    journal = (sessions / f"{open_id}.journal").read_bytes()
    opening, _, rest = journal.partition(b"\n")
    damaged = {
        "scene-20260101-000000-0000aaaa.json": record[: len(record) // 2],  # truncated
        "scene-20260101-000000-0000bbbb.json": record.replace(b'"data"', b'"dat\xff"', 1),
        "scene-20260101-000000-0000cccc.json": record.replace(b'"format":1', b'"format":7', 1),
        "scene-20260101-000000-0000dddd.journal": opening.replace(
            open_id.encode(), b"scene-20260101-000000-0000dddd"
        ) + b"\nGARBAGE\n" + rest,
        "scene-20260101-000000-0000eeee.journal": _newer(opening) + b"\n" + rest,
    }  # fmt: skip
    for name, data in damaged.items():
        (sessions / name).write_bytes(data)
    # A crash mid-line: the open session's own journal ends in half a line.
    (sessions / f"{open_id}.journal").write_bytes(journal + b'{"kind":"start","seq":9')

    programs.start_daemon()
    programs.wait_connected()
    listed = programs.json("list")
    assert sorted((s["session_id"], s["status"]) for s in listed["sessions"]) == sorted(
        [(closed_id, "closed"), (open_id, "open"), ("scene-20260101-000000-0000dddd", "open")]
    )
    reasons = {d["file"].split("-", 2)[-1]: d["reason"] for d in listed["damaged"]}
    # A damaged line in the middle of a journal costs only that line: that session is
    # recovered, and the line kept aside for a person to look at.
    recovered_id = "scene-20260101-000000-0000dddd"
    kept_lines = programs.data_dir / "quarantine" / f"{recovered_id}.journal-lines"
    assert b"GARBAGE" in kept_lines.read_bytes()
    assert recovered_id in {s["session_id"] for s in listed["sessions"]}
    del damaged[f"{recovered_id}.journal"]
    assert set(reasons) == set(damaged), reasons
    assert "newer than this daemon reads" in reasons["scene-20260101-000000-0000cccc.json"]
    assert "newer than this daemon reads" in reasons["scene-20260101-000000-0000eeee.journal"]
    assert all(d["file"].startswith("quarantine/") for d in listed["damaged"])
    # The rest is served: the recovered session goes on, the closed one restores.
    after = programs.json("cmd", "-s", open_id, "create_object", "kind=cube", "name=After")
    assert after["seq"] == 2
    restored = programs.json("restore", closed_id, "--path", "state")
    assert restored["restored_from"] == closed_id and restored["skipped"] == []
    scene = programs.json("state", restored["session_id"])["scene"]
    assert "Kept" in {o["name"] for o in scene["objects"]}


def _newer(opening_line: bytes) -> bytes:
    """The journal's opening line, claiming a future format."""
    head, marker, tail = opening_line.rpartition(b'"format":1')
    assert marker, opening_line[-80:]
    return head + b'"format":7' + tail
