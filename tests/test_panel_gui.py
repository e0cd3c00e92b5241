"""The Blender side as a user meets it: `blender-session blender --gui` (Debian's GUI
Blender under xvfb-run) loads the whole addon, so the 3D view's sidebar has the
Sessions tab; checked in a screenshot of the window, against one taken with the panel
unregistered."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import blender_procs
from .addon_client import AddonClient
from .programs import BIN, Programs, free_port

pytestmark = [pytest.mark.blender, pytest.mark.gui]

# Opens the 3D view's sidebar, redraws, and saves the window as a PNG.
SCREENSHOT = """
import bpy
window = bpy.context.window_manager.windows[0]
area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
area.spaces.active.show_region_ui = True
with bpy.context.temp_override(window=window, screen=window.screen, area=area):
    bpy.ops.wm.redraw_timer(type="DRAW_WIN_SWAP", iterations=1)
    bpy.ops.screen.screenshot(filepath={path!r})
region = next(r for r in area.regions if r.type == "UI")
print(json.dumps({{"panel": hasattr(bpy.types, "BSS_PT_sessions"),
                   "region": [region.x, region.y, region.width, region.height]}}))
"""
# How many pixels of the sidebar differ between two screenshots (read back by Blender).
DIFFERENCE = """
import bpy
a, b = (bpy.data.images.load(p) for p in ({a!r}, {b!r}))
width, height = a.size
pa, pb = list(a.pixels), list(b.pixels)
x0, y0, w, h = {region}
changed = sum(
    1
    for y in range(y0, y0 + h)
    for x in range(x0, x0 + w)
    if any(abs(pa[(y * width + x) * 4 + c] - pb[(y * width + x) * 4 + c]) > 0.05 for c in range(3))
)
print(json.dumps({{"changed": changed, "size": [width, height]}}))
"""


def launcher_gui(env: dict[str, str], port: int) -> blender_procs.BlenderProcess:
    """`blender-session blender --gui` on a virtual screen, as a user starts it."""
    command = [
        *blender_procs.xvfb_blender()[:4],  # xvfb-run -a -s "-screen 0 1280x800x24"
        str(BIN / "blender-session"),
        "blender",
        "--blender",
        str(shutil.which("blender")),
        "--gui",
        "--allow-execute-code",  # the test looks through it; a user needs none of this
        "--port",
        str(port),
    ]
    return blender_procs.start(command, env)


@pytest.fixture
def launched_gui(tmp_path: Path) -> Iterator[tuple[blender_procs.BlenderProcess, Path]]:
    blender_procs.require(
        blender_procs.have_gui_blender(), "Debian's blender and xvfb (apt-get install blender xvfb)"
    )
    proc = launcher_gui(blender_procs.blender_env(tmp_path / "home"), free_port())
    yield proc, tmp_path
    proc.stop()


def run(client: AddonClient, code: str) -> dict:
    output = client.ok("execute_code", {"code": "import json\n" + textwrap.dedent(code)})
    return json.loads(output["result"].strip().splitlines()[-1])


def test_the_launcher_gui_has_the_sessions_tab(
    launched_gui: tuple[blender_procs.BlenderProcess, Path],
) -> None:
    proc, tmp_path = launched_gui
    with_panel, without_panel = tmp_path / "with-panel.png", tmp_path / "without-panel.png"
    with AddonClient(proc.port) as client:
        shown = run(client, SCREENSHOT.format(path=str(with_panel)))
        assert shown["panel"] is True  # registered by the launcher, not by hand
        run(client, "bpy.utils.unregister_class(bpy.types.BSS_PT_sessions)\nprint('{}')")
        hidden = run(client, SCREENSHOT.format(path=str(without_panel)))
        assert hidden["panel"] is False
        difference = run(
            client,
            DIFFERENCE.format(a=str(with_panel), b=str(without_panel), region=shown["region"]),
        )
    assert with_panel.read_bytes().startswith(b"\x89PNG")
    assert difference["size"] == [1280, 800]
    # The Sessions tab is drawn in the sidebar's tab strip: the sidebar differs.
    assert difference["changed"] > 100, difference


REDRAWN = """
from blender_addon import runtime, ui
current = runtime.current()
print(json.dumps({"drawn": current._drawn_ping, "pinged": current.server.last_ping_at,
                  "wrapped": ui.message_lines("word " * 60, 300)}))
"""
# The panel's content, drawn in the sidebar's first tab (the Sessions tab is not the
# active one in a fresh window, and Blender 3.4 has no API to switch tabs).
SHOW_PANEL = """
from blender_addon import ui
shown = type("BSS_PT_sessions_shown", (ui.BSS_PT_sessions,),
             {"bl_category": "Item", "bl_idname": "BSS_PT_sessions_shown"})
bpy.utils.register_class(shown)
print(json.dumps({}))
"""
PANEL = """
from blender_addon import ui
state = ui.panel_state
print(json.dumps({"message": state.message, "busy": state.busy,
                  "sessions": [dict(s, label=ui.session_label(s)) for s in state.sessions]}))
"""


def wait_for_panel(client: AddonClient, done: Callable[[dict], bool], what: str) -> dict:
    """Poll the panel's state (each look is a round trip through Blender's main
    thread, where the buttons' outcomes land), bounded in time."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = run(client, PANEL)
        if not state["busy"] and done(state):
            return state
    raise AssertionError(f"{what} never showed in the panel: {state}")


def test_the_panel_opens_lists_and_restores_sessions(tmp_path: Path) -> None:
    blender_procs.require(
        blender_procs.have_gui_blender(), "Debian's blender and xvfb (apt-get install blender xvfb)"
    )
    programs = Programs(tmp_path)
    env = {k: v for k, v in programs.env.items() if k != "BLENDER_SESSIOND_DATA_DIR"}
    programs.blender = launcher_gui(env, programs.addon_port)
    try:
        programs.start_daemon()
        programs.wait_connected()
        with AddonClient(programs.addon_port) as client:
            run(client, "bpy.ops.bss.open_session(name='from the panel')\nprint('{}')")
            wait_for_panel(client, lambda s: s["message"].startswith("opened "), "the open")
            (session,) = programs.json("status")["open_sessions"]
            assert session["name"] == "from the panel"
            programs.cli(
                "cmd", "-s", session["session_id"], "create_object", "kind=cube", "name=Box"
            )
            programs.json("close", session["session_id"])
            run(client, "bpy.ops.bss.refresh_sessions()\nprint('{}')")
            listed = wait_for_panel(client, lambda s: bool(s["sessions"]), "the restore list")
            (saved,) = listed["sessions"]
            assert saved["restore_path"] == "blend"
            assert (
                saved["label"].startswith("from the panel  ")
                and "1 cmds  via blend" in (saved["label"])
            )
            run(
                client,
                f"bpy.ops.bss.restore_session(session={saved['session_id']!r})\nprint('{{}}')",
            )
            restored = wait_for_panel(
                client, lambda s: s["message"].startswith("restored into"), "the restore"
            )
            assert "via blend: restored from the .blend snapshot" in restored["message"]
            # Long messages wrap to the panel; heartbeats redraw it (the last one drawn).
            seen = run(client, REDRAWN)
            # (a ping may land between the last tick and this look: within a heartbeat)
            assert seen["drawn"] is not None and 0 <= seen["pinged"] - seen["drawn"] < 1.0
            assert len(seen["wrapped"]) > 1 and max(map(len, seen["wrapped"])) <= 42
            (again,) = programs.json("status")["open_sessions"]
            assert again["name"] == "from the panel (restored)"
            # The panel draws (names first) without an error; the screenshot is kept.
            run(client, SHOW_PANEL)
            picture = (
                Path("/tmp/bss-panel.png")
                if os.environ.get("BSS_KEEP_PANEL")
                else (tmp_path / "panel.png")
            )
            run(client, SCREENSHOT.format(path=str(picture)))
            assert picture.read_bytes().startswith(b"\x89PNG")
        assert "Traceback" not in "".join(programs.blender.output)
    finally:
        programs.stop()
