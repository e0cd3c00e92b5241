"""What blender-mcp clients need beyond the scene commands, on the addon (a real headless
Blender) and on the daemon's proxy: its probes, its unknown-command wording, its
screenshot written where it asks (safely), its name search; the proxy with Blender
down, and a pipelining client through the proxy."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from blender_addon import blender_mcp

from . import blender_procs
from .addon_client import BARE, LENGTH, NDJSON, AddonClient, frame
from .programs import Programs

pytestmark = pytest.mark.blender
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def blender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[blender_procs.BlenderProcess]:
    blender_procs.require(blender_procs.have_bpy(), "the bpy module (pip install bpy==5.0.1)")
    home = tmp_path_factory.mktemp("blender-home")
    proc = blender_procs.start(blender_procs.headless_command(), blender_procs.blender_env(home))
    yield proc
    assert proc.stop() == 0, "".join(proc.output)[-2000:]


@pytest.mark.parametrize("framing", [BARE, LENGTH])
def test_every_probe_is_answered_as_by_an_addon_with_integrations_off(
    blender: blender_procs.BlenderProcess, framing: str
) -> None:
    with AddonClient(blender.port, framing) as mcp:
        for probe in sorted(blender_mcp.STATUS_PROBES):
            mcp.send({"type": probe, "params": {}})
            reply = mcp.receive()
            assert reply["status"] == "success" and reply["result"]["enabled"] is False, probe
        mcp.send({"type": "set_telemetry_consent", "params": {"consent": True}})
        assert mcp.receive()["result"]["consent"] is False  # there is no telemetry to turn on
        mcp.send({"type": "get_addon_info"})
        info = mcp.receive()["result"]
        assert info["protocol_version"] == 15 and info["blender_version"].startswith("5.")
        assert "get_viewport_screenshot" in info["capabilities"]
        mcp.send({"type": "ping"})
        assert mcp.receive()["result"]["pong"] is True


def test_unknown_commands_in_blender_mcp_wording_for_its_clients_only(
    blender: blender_procs.BlenderProcess,
) -> None:
    with AddonClient(blender.port, BARE) as mcp:
        mcp.send({"type": "pick_viewport_object", "params": {}})
        assert mcp.receive()["message"] == "Unknown command type: pick_viewport_object"
    with AddonClient(blender.port, NDJSON) as ours:  # a request with an id: our wording
        ours.send({"id": 1, "type": "pick_viewport_object", "params": {}})
        reply = ours.receive()
        assert reply["code"] == "unknown_command" and "known: " in reply["message"]


def test_screenshot_is_written_where_asked_and_never_through_a_symlink(
    blender: blender_procs.BlenderProcess, tmp_path: Path
) -> None:
    with AddonClient(blender.port, BARE) as mcp:

        def shot(**params: object) -> dict:
            mcp.send({"type": "get_viewport_screenshot", "params": params})
            return mcp.receive()

        path = tmp_path / "shot.png"
        reply = shot(max_size=200, filepath=str(path), format="png")
        assert reply["status"] == "success", reply
        result = reply["result"]
        assert result["method"] == "render" and max(result["width"], result["height"]) == 200
        assert path.read_bytes().startswith(PNG) and result["filepath"] == str(path)
        # A symlink at the path is replaced by the image, not written through.
        victim = tmp_path / "victim.txt"
        victim.write_text("keep me")
        link = tmp_path / "link.png"
        link.symlink_to(victim)
        assert shot(filepath=str(link))["status"] == "success"
        assert victim.read_text() == "keep me" and not link.is_symlink()
        assert link.read_bytes().startswith(PNG)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bss")] == []
        for params, code in (
            ({"filepath": "relative.png"}, "invalid_params"),
            ({"filepath": str(tmp_path / "missing" / "x.png")}, "not_found"),
            ({"filepath": str(path), "format": "jpeg"}, "invalid_params"),
            ({"filepath": str(path), "max_size": 0}, "invalid_params"),
            ({"filepath": str(tmp_path)}, "invalid_params"),  # a directory is not replaced
            ({}, "invalid_params"),
        ):
            refused = shot(**params)
            assert refused["status"] == "error" and refused["code"] == code, (params, refused)
        assert tmp_path.is_dir()


def test_list_scene_items_searches_objects_materials_and_collections(
    blender: blender_procs.BlenderProcess,
) -> None:
    with AddonClient(blender.port, BARE) as mcp:
        mcp.send({"type": "list_scene_items", "params": {"query": "cu", "limit": 5}})
        result = mcp.receive()["result"]
        assert result["items"][0] == {"kind": "object", "name": "Cube", "detail": "Mesh object"}
        mcp.send({"type": "list_scene_items", "params": {"limit": 500}})
        assert mcp.receive()["code"] == "invalid_params"


def test_observation_scripts_are_known_by_blender_mcp_wrapper() -> None:
    wrapped = (
        'import json as _json\nARGS = _json.loads("{}")\ndef _main():\n    return 1\n'
        "print('__MCP_RESULT__' + _json.dumps(_main()))\n"
    )
    assert blender_mcp.is_observation_script(wrapped)
    assert not blender_mcp.is_observation_script("import bpy\nbpy.ops.mesh.primitive_cube_add()")
    assert not blender_mcp.is_observation_script(wrapped + "bpy.data.objects.clear()\n")


def test_proxy_without_blender_says_what_to_start(programs: Programs) -> None:
    programs.start_daemon("--proxy-port", "0")  # no Blender on the addon port
    proxy_port = int(programs.json("status")["proxy"].rsplit(":", 1)[1])
    with AddonClient(proxy_port, BARE) as mcp:
        for kind in ("get_addon_info", "get_telemetry_consent", "get_scene_info", "ping"):
            mcp.send({"type": kind, "params": {}})
            reply = mcp.receive()
            assert reply["status"] == "error", (kind, reply)
            assert "blender-session blender" in reply["message"]
    assert programs.json("status")["open_sessions"] == []  # nothing opened for it


def test_a_pipelining_client_through_the_proxy_is_answered_and_recorded_in_order(
    programs: Programs,
) -> None:
    programs.start_blender()
    programs.start_daemon("--proxy-port", "0")
    proxy_port = int(programs.wait_connected()["proxy"].rsplit(":", 1)[1])
    names = [f"P{index}" for index in range(40)]
    requests = [{"type": "create_object", "params": {"kind": "cube", "name": n}} for n in names]
    requests.insert(20, {"type": "get_meshy_status"})  # a probe in the middle
    requests.insert(30, {"type": "teleport"})  # and a refusal
    with AddonClient(proxy_port, LENGTH) as mcp:
        mcp.sock.sendall(b"".join(frame(request, LENGTH) for request in requests))
        replies = [mcp.receive() for _ in requests]
    assert replies[20]["result"]["enabled"] is False
    assert replies[30]["message"] == "Unknown command type: teleport"
    created = [r["result"]["name"] for r in replies if r.get("result", {}).get("name")]
    assert created == names
    (session,) = programs.json("status")["open_sessions"]
    closed = programs.json("close", session["session_id"])
    data = json.loads(Path(closed["path"]).read_text())["data"]
    recorded = [c["params"]["name"] for c in data["commands"] if c["type"] == "create_object"]
    assert recorded == names and sorted(data["state"]["objects"]) == sorted(names)
    (client_id,) = {c["client_id"] for c in data["commands"]}
    assert client_id.endswith(f"-{os.getpid()}")
