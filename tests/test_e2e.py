"""End to end: the real `blender-sessiond` and `blender-session` programs against the
real addon in a real headless Blender (the bpy module)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import msgspec
import pytest

from daemon.clients.client import ClientError, ControlClient, find_endpoint

from .helpers import object_records
from .programs import BIN, Programs

pytestmark = pytest.mark.blender


def test_session_end_to_end_record_and_restore_into_fresh_blender(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    opened = programs.json("open", "--name", "e2e")
    session_id = opened["session_id"]
    started = time.time()
    programs.cli("cmd", "create_object", "kind=monkey", "name=Suzanne", "location=[0,0,2]")
    programs.cli("cmd", "create_object", "kind=torus", "name=Ring")
    programs.cli("cmd", "transform_object", "name=Ring", "rotation=[1.5708,0,0]", "scale=[2,2,2]")
    programs.cli("cmd", "set_material", "object=Suzanne", "material=Gold", "color=[1,0.8,0,1]")
    programs.cli("cmd", "select_objects", 'names=["Ring","Suzanne"]', "active=Suzanne")
    programs.cli("cmd", "--params", '{"name": "Ring", "new_name": "Halo"}', "rename_object")
    programs.cli("cmd", "get_scene_info")
    bad = programs.cli("cmd", "delete_object", "name=Ghost", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("blender-session: not_found:")
    before = programs.json("state")["scene"]
    closed = programs.json("close")
    path = Path(closed["path"])
    assert path == programs.data_dir / "sessions" / f"{session_id}.json"
    assert not path.with_suffix(".journal").exists()

    record = json.loads(path.read_text())
    assert record["format"] == 1 and record["session_id"] == session_id
    data = record["data"]
    assert data["session_id"] == session_id and data["name"] == "e2e"
    assert started - 60 < data["created_at"] <= data["last_activity"] <= data["closed_at"]
    assert data["blender"] == {
        "connected": True,
        "host": "127.0.0.1",
        "port": programs.addon_port,
        "last_heartbeat": data["blender"]["last_heartbeat"],
        "version": "5.0.1",
        "file": "",
        "instance_id": data["blender"]["instance_id"],
    }
    assert len(data["blender"]["instance_id"]) == 32  # the addon's, new each Blender start
    assert data["closed_at"] - data["blender"]["last_heartbeat"] < 5
    assert sorted(data["state"]["objects"]) == ["Halo", "Suzanne"]
    assert data["state"]["selection"] == "Suzanne"
    assert data["state"]["last_command"] == "delete_object"
    assert data["state"]["last_result"]["status"] == "error"
    assert object_records(data["state"]["scene"]) == object_records(before)
    assert data["command_count"] == 8 and data["restored_from"] is None
    types = [c["type"] for c in data["commands"]]
    assert types == [
        "create_object",
        "create_object",
        "transform_object",
        "set_material",
        "select_objects",
        "rename_object",
        "get_scene_info",
        "delete_object",
    ]
    assert [c["seq"] for c in data["commands"]] == list(range(1, 9))
    assert all(
        c["client_id"] and c["duration_ms"] >= 0 and c["started_at"] >= started - 60
        for c in data["commands"]
    )
    assert data["commands"][0]["params"] == {
        "kind": "monkey",
        "name": "Suzanne",
        "location": [0, 0, 2],
    }
    assert data["commands"][0]["result"]["name"] == "Suzanne"

    # A fresh Blender replaces this one; the daemon reconnects; restore brings it back.
    assert programs.blender is not None
    programs.blender.kill()
    programs.start_blender()
    programs.wait_connected()
    restored = programs.json("restore", "e2e", "--name", "e2e-again", "--path", "state")
    assert restored["restored_from"] == session_id and restored["path"] == "state"
    assert sorted(restored["created"]) == ["Halo", "Suzanne"] and restored["skipped"] == []
    after = programs.json("state", restored["session_id"])["scene"]
    assert object_records(after) == object_records(before)
    assert after["active"] == "Suzanne" and sorted(after["selection"]) == ["Halo", "Suzanne"]
    assert after["material_colors"]["Gold"] == pytest.approx([1, 0.8, 0, 1], abs=1e-6)
    listed = programs.json("list")["sessions"]
    assert [(s["name"], s["status"]) for s in listed] == [("e2e-again", "open"), ("e2e", "closed")]


def test_killed_daemon_recovers_the_open_session(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "crashy")["session_id"]
    for index in range(5):
        programs.cli("cmd", "create_object", "kind=cube", f"name=C{index}")
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGKILL)
    programs.daemon.wait()
    programs.start_daemon()
    programs.wait_connected()
    listed = programs.json("list")["sessions"]
    assert [(s["session_id"], s["status"], s["command_count"]) for s in listed] == [
        (session_id, "open", 5)
    ]
    programs.cli("cmd", "-s", "crashy", "delete_object", "name=C0")
    closed = programs.json("close", "crashy")
    data = json.loads(Path(closed["path"]).read_text())["data"]
    assert [c["seq"] for c in data["commands"]] == [1, 2, 3, 4, 5, 6]
    assert sorted(data["state"]["objects"]) == ["C1", "C2", "C3", "C4"]


def test_cli_reports_a_missing_daemon_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "blender-session"), "--data-dir", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "blender-sessiond" in result.stderr


def test_daemon_refuses_a_busy_control_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                str(BIN / "blender-sessiond"),
                "--data-dir",
                str(tmp_path),
                "--control-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "BLENDER_SESSIOND_LOG_FORMAT": "json"},
        )
    assert result.returncode == 1
    assert "pick another with --control-port" in result.stderr


def test_daemon_killed_mid_stream_loses_no_acknowledged_command(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "stream")["session_id"]
    host, port, token = find_endpoint(programs.data_dir)
    acknowledged: list[tuple[int, str]] = []
    enough = threading.Event()
    ended_by: list[Exception] = []

    def stream() -> None:
        with ControlClient(host, port, token) as client:
            for index in range(100_000):
                name = f"S{index}"
                params = {
                    "session_id": session_id,
                    "type": "create_object",
                    "params": {"kind": "cube", "name": name},
                }
                try:
                    reply = msgspec.json.decode(client.call("session.command", params))
                except (ClientError, OSError) as error:
                    ended_by.append(error)  # the daemon died: this one was never acknowledged
                    enough.set()
                    return
                acknowledged.append((reply["seq"], name))
                if len(acknowledged) == 300:
                    enough.set()

    streamer = threading.Thread(target=stream)
    streamer.start()
    assert enough.wait(120), "the stream did not get going"
    assert not ended_by, ended_by
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGKILL)  # mid-stream
    programs.daemon.wait()
    streamer.join(60)
    assert not streamer.is_alive()
    programs.start_daemon()
    programs.wait_connected()
    closed = programs.json("close", session_id)
    commands = json.loads(Path(closed["path"]).read_text())["data"]["commands"]
    seqs = [c["seq"] for c in commands]
    assert len(seqs) == len(set(seqs))  # no duplicates
    recorded = {c["seq"]: c for c in commands}
    for seq, name in acknowledged:
        assert recorded[seq]["status"] == "success" and recorded[seq]["params"]["name"] == name
    # At most the one command in flight at the kill is beyond the acknowledged ones.
    assert len(commands) - len(acknowledged) <= 1


def test_cli_exit_codes_json_errors_and_version(tmp_path: Path) -> None:
    """0/1/2/3 as the README says; with --json, an error is one JSON object on stdout;
    --version on both programs. (1, a refusal, is in every e2e test above.)"""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "blender-session"), "--data-dir", str(tmp_path), *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    usage = run("cmd", "create_object", "kind")  # not key=value: said before any daemon
    assert usage.returncode == 2 and "expected key=value" in usage.stderr
    assert run("cmd", "get_state", "--params", "[1]").returncode == 2
    no_daemon = run("--json", "list")
    assert no_daemon.returncode == 3 and not no_daemon.stderr
    error = json.loads(no_daemon.stdout)["error"]
    assert error["code"] == "no_daemon" and f"--data-dir {tmp_path}" in error["message"]
    assert json.loads(run("--json", "cmd", "x", "y").stdout)["error"]["code"] == "usage"
    for program in ("blender-session", "blender-sessiond"):
        shown = subprocess.run([str(BIN / program), "--version"], capture_output=True, text=True)
        assert shown.returncode == 0 and shown.stdout.startswith(f"{program} 0.")


def test_cmd_file_sends_many_commands_each_recorded(programs: Programs, tmp_path: Path) -> None:
    """`cmd --file` (and `-` for stdin): pipelined through `session.batch`, each command
    its own step; a failure is named, exit 1; --stop-on-error sends nothing after it."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "batch")["session_id"]
    lines = [json.dumps({"type": "create_object", "params": {"kind": "cube", "name": f"B{n}"}})
             for n in range(1200)]  # fmt: skip
    lines.insert(700, json.dumps({"type": "delete_object", "params": {"name": "Ghost"}}))
    lines.insert(3, "# a comment, and a blank line next")
    lines.insert(4, "")
    commands = tmp_path / "commands.jsonl"
    commands.write_text("\n".join(lines) + "\n")
    done = programs.cli("cmd", "--file", str(commands), check=False)
    assert done.returncode == 1, done.stderr
    assert "1201 command(s): 1200 succeeded, 1 failed, 0 not sent" in done.stdout
    assert "command 701 (delete_object): not_found" in done.stdout
    names = {o["name"] for o in programs.json("state")["scene"]["objects"]}
    assert {f"B{n}" for n in range(1200)} <= names
    stopping = "\n".join(
        json.dumps(command)
        for command in (
            {"type": "delete_object", "params": {"name": "Ghost"}},
            {"type": "create_object", "params": {"kind": "cube", "name": "Never"}},
        )
    )
    stopped = subprocess.run(
        [str(BIN / "blender-session"), "--data-dir", str(programs.data_dir), "--json", "cmd",
         "--file", "-", "--stop-on-error"],
        input=stopping, capture_output=True, text=True, env=programs.env, timeout=120,
    )  # fmt: skip
    assert stopped.returncode == 1
    shown = [json.loads(line) for line in stopped.stdout.splitlines()]
    assert [(s["command"], s["status"]) for s in shown] == [(1, "error"), (2, "skipped")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "create_object"}\n{"kind": "cube"}\n')
    refused = programs.cli("cmd", "--file", str(bad), check=False)
    assert refused.returncode == 2 and f"{bad}:2:" in refused.stderr
    closed = programs.json("close", session_id)
    record = json.loads(Path(closed["path"]).read_text())["data"]
    created = [c for c in record["commands"] if c["type"] == "create_object"]
    assert [c["params"]["name"] for c in created] == [f"B{n}" for n in range(1200)]
    assert len({c["seq"] for c in record["commands"]}) == len(record["commands"]) == 1202
