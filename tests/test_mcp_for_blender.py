"""The real `mcp-for-blender` MCP server (blender-mcp's client, from PyPI, pinned in
tests/mcp_for_blender.py) through us, unchanged: against our addon and against the
daemon's recording proxy, in headless Blender (the bpy module) with execute_code on
and off, and against a GUI Blender under xvfb. docs/blender-mcp-clients.md keeps the
whole table of its tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import blender_procs
from .mcp_for_blender import require_mcp_for_blender, server_env, tool_outcomes
from .programs import Programs

pytestmark = pytest.mark.blender
PNG = b"\x89PNG\r\n\x1a\n"
PROBES = ("get_addon_info", "_status", "telemetry_consent")


@pytest.mark.parametrize("via", ["addon", "proxy"])
@pytest.mark.parametrize("code", ["off", "on"])
async def test_mcp_for_blender_works_through_us(
    programs: Programs, tmp_path: Path, via: str, code: str
) -> None:
    require_mcp_for_blender()
    allow = ["--allow-execute-code"] if code == "on" else []
    programs.start_blender(*allow, empty_scene=False)
    port = programs.addon_port
    if via == "proxy":
        programs.start_daemon("--proxy-port", "0", *allow)
        port = int(programs.wait_connected()["proxy"].rsplit(":", 1)[1])
    log = tmp_path / "mcp-for-blender.log"
    out = await tool_outcomes(server_env(tmp_path / "client", port), log)

    status = json.loads(out["get_addon_status()"].text)
    assert status["up_to_date"] is True and status["warning"] is None, status
    assert status["protocol_version"] == status["expected_protocol_version"] == 15
    assert set(status["libraries"].values()) == {"off"}, status
    assert status["telemetry_consent"] is not True
    scene = out["get_scene_info()"]
    assert scene.ok and "Cube" in scene.text
    look = out["look(max_size=300)"]
    assert look.image is not None and look.image.startswith(PNG)
    angles = out['look(mode="angles", max_size=300)']
    assert angles.image is not None  # with code off: the plain viewport, with a note
    reads, changes = (
        out["execute_blender_code(reads)"],
        out["execute_blender_code(changes the scene)"],
    )
    if code == "on":
        assert reads.ok and "'Camera', 'Cube', 'Light'" in reads.text
        assert changes.ok and scene.text.startswith("Scene 'Scene'")  # its own summary script
        assert '"location": [2.0, 0.0, 0.0]' in out["resource blender://object/Cube"].text
    else:
        assert not reads.ok and "--allow-execute-code" in reads.text
        assert '"location": [0.0, 0.0, 0.0]' in out["resource blender://object/Cube"].text
    assert out["resource blender://object/Cube"].ok
    assert "switched off" in out['search_assets(source="polyhaven", query="chair")'].text
    # Probes are answered: none of them ever failed (each failure costs it a reconnect).
    failures = [line for line in log.read_text().splitlines() if "Error communicating" in line]
    assert not [line for line in failures if any(probe in line for probe in PROBES)], failures
    if code == "on":  # only the asset integrations (switched off) are missing
        assert all("Unknown command type: " in line for line in failures), failures

    if via == "proxy":
        (session,) = programs.json("status")["open_sessions"]
        closed = programs.json("close", session["session_id"])
        data = json.loads(Path(closed["path"]).read_text())["data"]
        commands = data["commands"]
        kinds = {c["type"] for c in commands}
        assert {"get_viewport_screenshot", "get_object_info", "list_scene_items"} <= kinds
        probes = [c for c in commands if c["housekeeping"]]
        assert probes and all(any(p in c["type"] for p in PROBES) for c in probes)
        assert all(not c["housekeeping"] for c in commands if c["type"] == "get_object_info")
        (client_id,) = {c["client_id"] for c in commands}
        assert client_id.startswith("proxy-mcp-for-blender") or "python" in client_id, client_id
        scripts = [c for c in commands if c["type"] == "execute_code"]
        if code == "on":
            # Its scene summary and look scripts are observations; the script that
            # moved the cube is a change, followed by a checkpoint.
            looked = [c for c in scripts if c["observation"]]
            (changed,) = [c for c in scripts if "location.x = 2" in c["params"]["code"]]
            assert len(looked) >= 3 and not changed["observation"]
            checkpoint_steps = {c["seq"] for c in data["checkpoints"]}
            assert changed["seq"] in checkpoint_steps
            assert not checkpoint_steps & {c["seq"] for c in looked}
            shown = programs.cli("show", session["session_id"]).stdout
            assert "execute_code (observation)" in shown and "(probe)" in shown
        else:
            assert scripts == []  # refused by the proxy: never sent, never recorded


async def test_mcp_for_blender_sees_a_gui_blender(tmp_path: Path) -> None:
    require_mcp_for_blender()
    blender_procs.require(blender_procs.have_gui_blender(), "blender and xvfb-run")
    env = blender_procs.blender_env(tmp_path / "home")
    blender = blender_procs.start(blender_procs.gui_command("--allow-execute-code"), env)
    try:
        calls = [("get_scene_info", {}), ("look", {"max_size": 400})]
        log = tmp_path / "mcp-for-blender.log"
        out = await tool_outcomes(server_env(tmp_path / "client", blender.port), log, calls)
    finally:
        blender.stop()
    assert out["get_scene_info()"].text.startswith("Scene 'Scene'")  # its script ran
    assert "Cube" in out["get_scene_info()"].text
    image = out["look(max_size=400)"].image
    assert image is not None and image.startswith(PNG)
    # The 3D viewport drawn off-screen (a render would be 400x225 at 16:9).
    assert b"IHDR" in image[:16] and int.from_bytes(image[16:20], "big") == 400
    assert "Error communicating" not in log.read_text()
