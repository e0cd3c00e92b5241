"""The addon in Debian's GUI Blender (3.4) under xvfb-run: the timer path, events
from edits that do not come through the socket, and the legacy addon install."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.clients.addon_zip import build_addon_zip

from . import blender_procs
from .addon_client import LENGTH, AddonClient
from .programs import free_port

pytestmark = [pytest.mark.blender, pytest.mark.gui]


def require_gui() -> None:
    blender_procs.require(
        blender_procs.have_gui_blender(), "Debian's blender and xvfb (apt-get install blender xvfb)"
    )


@pytest.fixture(scope="module")
def gui_blender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[blender_procs.BlenderProcess]:
    require_gui()
    home = tmp_path_factory.mktemp("gui-home")
    # Stands in for a person editing the scene: renames the default cube from a timer,
    # through bpy directly, not through the addon's socket.
    user_edit = home / "user_edit.py"
    user_edit.write_text(
        textwrap.dedent("""
        import bpy, os
        def edit():
            flag = os.environ["BSS_EDIT_FLAG"]
            if not os.path.exists(flag):
                return 0.05
            bpy.data.objects["Cube"].name = "EditedByHand"
            return None
        bpy.app.timers.register(edit, first_interval=0.05, persistent=True)
    """)
    )
    env = blender_procs.blender_env(home)
    env["BSS_EDIT_FLAG"] = str(home / "edit-now")
    proc = blender_procs.start(blender_procs.gui_command(extra=["--python", str(user_edit)]), env)
    proc.home = home  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def test_gui_timer_path_serves_commands(gui_blender: blender_procs.BlenderProcess) -> None:
    with AddonClient(gui_blender.port) as client:
        hello = client.ok("hello", {"client": "test"})
        assert hello["blender_version"].startswith("3.4")
        created = client.ok("create_object", {"kind": "monkey", "name": "GuiMonkey"})
        assert created["data_kind"] == "monkey"
        names = [o["name"] for o in client.ok("get_state")["objects"]]
        assert "GuiMonkey" in names and "Cube" in names
        pong = client.ok("ping")
        assert pong["main_thread"]["busy"] is False
        client.ok("delete_object", {"name": "GuiMonkey"})


def test_gui_blender_mcp_length_prefixed_client(gui_blender: blender_procs.BlenderProcess) -> None:
    with AddonClient(gui_blender.port, LENGTH) as mcp:
        mcp.send({"type": "get_scene_info"})
        reply = mcp.receive()
        assert reply["status"] == "success" and reply["result"]["object_count"] >= 3


def test_gui_edit_by_hand_sends_scene_changed(gui_blender: blender_procs.BlenderProcess) -> None:
    with AddonClient(gui_blender.port) as client:
        client.ok("subscribe", {"events": ["scene_changed"]})
        (gui_blender.home / "edit-now").touch()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = client.receive()
            if (
                message.get("event") == "scene_changed"
                and "EditedByHand" in message["data"]["objects"]
            ):
                assert message["seq"] >= 1
                return
        pytest.fail("no scene_changed event for an edit made by hand")


def test_legacy_addon_install_enables_and_serves(tmp_path: Path) -> None:
    """Installed from the zip as a legacy addon (bl_info) in Blender 3.4: enabling it
    registers the preferences, panel and operators, and the operator starts the server."""
    require_gui()
    home = tmp_path / "home"
    env = blender_procs.blender_env(home)
    zip_path = tmp_path / "addon.zip"
    build_addon_zip(zip_path)
    port = free_port()
    script = tmp_path / "enable.py"
    script.write_text(
        textwrap.dedent(f"""
        import bpy, addon_utils, sys
        bpy.ops.preferences.addon_install(filepath={str(zip_path)!r})
        addon_utils.enable("blender_scene_sessions", default_set=True)
        prefs = bpy.context.preferences.addons["blender_scene_sessions"].preferences
        prefs.port = {port}
        assert hasattr(bpy.types, "BSS_PT_sessions")
        bpy.ops.bss.start_server()
        print("blender-scene-sessions addon listening on 127.0.0.1:{port}", flush=True)
    """)
    )
    command = blender_procs.xvfb_blender("--python", str(script))
    proc = blender_procs.start(command, env)
    try:
        with AddonClient(proc.port) as client:
            assert client.ok("hello", {"client": "t"})["addon_version"] == "0.1.0"
            assert client.ok("create_object", {"kind": "torus"})["data_kind"] == "torus"
    finally:
        proc.stop()
    installed = home / "blender" / "scripts" / "addons" / "blender_scene_sessions"
    assert (installed / "__init__.py").exists()
