"""Secure by default, end to end against the real programs: the control token, hostile
session ids, loopback-only listening, and execute_code off unless allowed. Each is
refused with its error code, and nothing is written."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daemon.clients.client import find_endpoint

from . import blender_procs
from .hostile import HOSTILE_IDS
from .programs import Programs

pytestmark = pytest.mark.blender

# Every op that takes a session id, with the rest of its params.
SESSION_OPS: list[tuple[str, dict[str, Any]]] = [
    ("session.command", {"type": "get_scene_info"}),
    ("session.state", {}),
    ("session.close", {}),
    ("session.show", {}),
    ("session.delete", {}),
    ("session.restore", {}),
    ("session.set_data", {"key": "note", "value": 1}),
    ("session.thumbnail", {}),
]
EVERY_OP: list[tuple[str, dict[str, Any]]] = [
    ("status", {}),
    ("session.open", {"name": "intruder"}),
    ("session.list", {}),
    ("session.stats", {}),
    ("session.cleanup", {"older_than_days": 0}),
    ("session.export", {"path": "/tmp/stolen.tar.gz", "all": True}),
    ("session.import", {"path": "/tmp/stolen.tar.gz"}),
    ("watch", {}),
]


class RawControl:
    """Requests exactly as written, token or not, over one connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.reader = self.sock.makefile("rb")
        self.next_id = 0

    def call(self, op: str, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "op": op, "params": params}
        if token is not None:
            message["token"] = token
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        reply: dict[str, Any] = json.loads(self.reader.readline())
        assert reply["id"] == self.next_id
        return reply

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def tree(root: Path) -> dict[str, int]:
    """Every file under `root` with its size: what 'nothing written' is checked against."""
    return {str(path.relative_to(root)): path.stat().st_size for path in root.rglob("*")}


@pytest.fixture
def running(programs: Programs) -> Programs:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    return programs


def test_without_the_right_token_every_op_is_unauthorized_and_writes_nothing(
    running: Programs,
) -> None:
    session_id = running.json("open", "--name", "mine")["session_id"]
    _, port, token = find_endpoint(running.data_dir)
    before = tree(running.data_dir)
    client = RawControl(port)
    wrong_tokens: list[str | None] = [None, "", "x" * 43, token[:-1], token + "x", token.upper()]
    for op, params in [
        *EVERY_OP,
        *((op, {"session_id": session_id, **p}) for op, p in SESSION_OPS),
    ]:
        for wrong in wrong_tokens:
            reply = client.call(op, params, wrong)
            assert reply == {
                "id": client.next_id,
                "ok": False,
                "error": {"code": "unauthorized", "message": "unauthorized"},
            }, (op, wrong)
    client.close()
    assert tree(running.data_dir) == before
    assert not Path("/tmp/stolen.tar.gz").exists()


def test_fifty_hostile_session_ids_are_refused_by_every_op_and_touch_nothing(
    running: Programs,
) -> None:
    running.json("open", "--name", "bystander")
    _, port, token = find_endpoint(running.data_dir)
    outside = running.data_dir.parent
    before_inside, before_outside = tree(running.data_dir), tree(outside)
    client = RawControl(port)
    for op, extra in SESSION_OPS:
        for hostile in HOSTILE_IDS:
            reply = client.call(op, {"session_id": hostile, **extra}, token)
            assert reply["ok"] is False, (op, hostile, reply)
            assert reply["error"]["code"] in {"invalid_params", "not_found"}, (op, hostile)
    assert client.call("status", {}, token)["ok"]  # and the daemon serves on
    client.close()
    assert tree(running.data_dir) == before_inside
    assert tree(outside) == before_outside


def test_export_of_hostile_session_ids_is_refused_and_writes_no_archive(
    running: Programs, tmp_path: Path
) -> None:
    _, port, token = find_endpoint(running.data_dir)
    archive = tmp_path / "out.tar.gz"
    client = RawControl(port)
    for hostile in HOSTILE_IDS:
        reply = client.call(
            "session.export", {"path": str(archive), "session_ids": [hostile]}, token
        )
        assert reply["ok"] is False and reply["error"]["code"] in {"invalid_params", "not_found"}
    client.close()
    assert not archive.exists()


def test_addon_refuses_a_non_loopback_address_unless_allowed(tmp_path: Path) -> None:
    blender_procs.require(blender_procs.have_bpy(), "the bpy module (pip install bpy==5.0.1)")
    result = subprocess.run(
        [sys.executable, "-m", "blender_addon.headless", "--host", "0.0.0.0", "--port", "0"],
        env=blender_procs.blender_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "not loopback" in result.stdout + result.stderr


def test_daemon_has_no_way_to_listen_beyond_loopback(tmp_path: Path) -> None:
    """The control port and the proxy take no host: `--help` offers none, and the
    listener itself refuses one."""
    from daemon.listeners import CappedListener

    helped = subprocess.run(
        [str(Path(sys.executable).parent / "blender-sessiond"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0
    assert "--control-host" not in helped.stdout and "--proxy-host" not in helped.stdout
    with pytest.raises(ValueError, match="not loopback"):
        CappedListener(
            "control",
            None,
            host="0.0.0.0",
            port=0,
            max_connections=1,
            refusal=bytes,  # type: ignore[arg-type]
        )


def test_execute_code_is_refused_while_the_preference_is_off(
    running: Programs, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('x')"
    # Through the daemon:
    running.json("open", "--name", "careful")
    result = running.cli("cmd", "execute_code", f"code={code}", check=False)
    assert result.returncode != 0
    assert "forbidden" in result.stderr
    # And straight to the addon:
    assert running.blender is not None
    with socket.create_connection(("127.0.0.1", running.blender.port), timeout=60) as sock:
        request = {"type": "execute_code", "params": {"code": code}}
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(sock.makefile("rb").readline())
    assert reply.get("status") == "error" and "forbidden" in json.dumps(reply)
    assert not marker.exists()
