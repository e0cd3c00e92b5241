"""The recording proxy: blender-mcp style clients (both framings) talk to the daemon's
proxy port as if it were the addon, and find their commands in the session record,
with blender-mcp's housekeeping probes tagged as such. Real daemon, real Blender."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .addon_client import BARE, LENGTH, AddonClient, frame
from .programs import Programs

pytestmark = pytest.mark.blender


def test_blender_mcp_clients_through_the_proxy_are_recorded(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon("--proxy-port", "0")
    programs.wait_connected()
    status = programs.json("status")
    proxy_port = int(status["proxy"].rsplit(":", 1)[1])
    assert "proxy " in programs.cli("status").stdout

    for framing, name in ((BARE, "Bare"), (LENGTH, "Framed")):
        with AddonClient(proxy_port, framing) as mcp:
            mcp.send({"type": "get_polyhaven_status", "params": {}})
            probe = mcp.receive()
            assert probe == {
                "status": "success",
                "result": {"enabled": False, "message": probe["result"]["message"]},
            }
            mcp.send({"type": "get_telemetry_consent"})
            assert mcp.receive()["result"]["consent"] is False
            mcp.send({"type": "create_object", "params": {"kind": "cone", "name": name}})
            assert mcp.receive()["result"]["name"] == name
            # Two requests in one write: both answered, in order.
            mcp.sock.sendall(
                frame({"type": "get_object_info", "params": {"name": name}}, framing)
                + frame({"type": "get_scene_info", "params": {}}, framing)
            )
            info, scene = mcp.receive(), mcp.receive()
            assert info["result"]["name"] == name and "object_count" in scene["result"]
            mcp.send({"type": "download_polyhaven_asset", "params": {"asset_id": "x"}})
            missing = mcp.receive()
            assert missing["status"] == "error"
            assert "download_polyhaven_asset" in missing["message"]
            mcp.send({"type": "get_object_info", "params": {"name": "Ghost"}})
            assert mcp.receive()["status"] == "error"

    (session,) = programs.json("status")["open_sessions"]
    assert session["name"].startswith("proxy ")
    closed = programs.json("close", session["session_id"])
    data = json.loads(Path(closed["path"]).read_text())["data"]
    kinds = [(c["type"], c["housekeeping"]) for c in data["commands"]]
    scene_commands = [
        ("create_object", False),
        ("get_object_info", False),
        ("get_scene_info", False),
        ("get_object_info", False),
    ]
    # The first client's probes came before any session was open: probes alone never
    # open one. The second client's are recorded, tagged.
    assert kinds == [
        *scene_commands,
        ("get_polyhaven_status", True),
        ("get_telemetry_consent", True),
        *scene_commands,
    ]
    assert data["command_count"] == 8  # housekeeping is not counted
    # One client identity per peer process, however often it reconnects: this test's.
    (client_id,) = {c["client_id"] for c in data["commands"]}
    assert client_id.startswith("proxy-") and client_id.endswith(f"-{os.getpid()}")
    assert sorted(data["state"]["objects"]) == ["Bare", "Framed"]
