"""Time travel in Debian's GUI Blender (3.4) under xvfb-run, with the real daemon: a
change made by hand (bpy, from a timer, as a person's edit is: not through the socket)
is a step of the timeline and a rewind across it is exact; Ctrl-Z undoes one command."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.clients.client import ControlClient, find_endpoint

from . import blender_procs
from .programs import Programs
from .test_timetravel import Driver

pytestmark = [pytest.mark.blender, pytest.mark.gui]
WAIT_S = 30.0

# Stands in for a person at the keyboard: acts when a flag file appears (once each).
PERSON = """
import bpy, os
home = os.environ["BSS_PERSON_DIR"]

def flag(name):
    path = os.path.join(home, name)
    if os.path.exists(path):
        os.remove(path)
        return True
    return False

def act():
    try:
        act_once()
    except Exception:
        import traceback
        traceback.print_exc()
    return 0.05

def act_once():
    if flag("move"):
        bpy.data.objects["Box"].location = (5.0, 5.0, 5.0)
        bpy.data.objects["Box"].scale = (1.0, 3.0, 1.0)
    rewind = os.path.join(home, "rewind-to")
    if os.path.exists(rewind):  # the sidebar's rewind button, as a click runs it
        seq = int(open(rewind).read())
        os.remove(rewind)
        from blender_addon import ui  # the addon runs from headless.py: its panel's
        if not hasattr(bpy.types, "BSS_OT_rewind"):  # operator, registered here
            bpy.utils.register_class(ui.BSS_OT_rewind)
        bpy.ops.bss.rewind(seq=seq)
    if flag("ctrl-z"):
        window = bpy.context.window_manager.windows[0]
        with bpy.context.temp_override(window=window):
            bpy.ops.ed.undo()

bpy.app.timers.register(act, first_interval=0.05, persistent=True)
"""


@pytest.fixture
def gui(tmp_path: Path) -> Iterator[tuple[Programs, Driver, Path]]:
    blender_procs.require(
        blender_procs.have_gui_blender(), "Debian's blender and xvfb (apt-get install blender xvfb)"
    )
    programs = Programs(tmp_path)
    person_dir = tmp_path / "person"
    person_dir.mkdir()
    script = tmp_path / "person.py"
    script.write_text(textwrap.dedent(PERSON))
    # No BLENDER_SESSIOND_DATA_DIR: the panel's buttons find the daemon (a non-default
    # --data-dir) because the daemon tells the addon where it is.
    env = {**programs.env, "BSS_PERSON_DIR": str(person_dir)}
    env.pop("BLENDER_SESSIOND_DATA_DIR", None)
    blender = blender_procs.start(blender_procs.gui_command(extra=["--python", str(script)]), env)
    programs.blender = blender
    programs.addon_port = blender.port
    try:
        programs.start_daemon()
        programs.wait_connected()
        session_id = programs.json("open", "--name", "gui")["session_id"]
        host, port, token = find_endpoint(programs.data_dir)
        with ControlClient(host, port, token) as client:
            driver = Driver(client, session_id)
            driver.after[0] = driver.scene()
            yield programs, driver, person_dir
    finally:
        programs.stop()


def timeline(driver: Driver) -> list[Any]:
    entries: list[Any] = driver.call("session.timeline", limit=10_000)["entries"]
    return entries


def wait_until(driver: Driver, done: Any, what: str) -> list[Any]:
    """Poll the timeline until `done(entries)`, bounded in time; between looks, a
    round trip through Blender's main thread (where the person's timer runs)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        entries = timeline(driver)
        if done(entries):
            return entries
        driver.scene()
    raise AssertionError(f"{what} never happened within {WAIT_S} s: {entries[-5:]}")


def test_a_gui_edit_is_a_step_and_a_rewind_across_it_is_exact(
    gui: tuple[Programs, Driver, Path],
) -> None:
    _, driver, person = gui
    driver.step("create_object", kind="cube", name="Box", location=[1, 0, 0])
    before_edit = driver.step("create_object", kind="uv_sphere", name="Ball")
    (person / "move").touch()
    entries = wait_until(
        driver, lambda es: any(e["kind"] == "edit" and "Box" in e["objects"] for e in es), "edit"
    )
    edit = next(e for e in entries if e["kind"] == "edit")
    assert edit["seq"] == before_edit + 1 and "gui" in edit["summary"]
    after_edit = driver.scene()
    assert after_edit["Box"][2] == [5.0, 5.0, 5.0]
    driver.step("delete_object", name="Ball")
    driver.call("session.rewind", to_seq=before_edit)
    assert driver.scene() == driver.after[before_edit]
    driver.call("session.rewind", to_seq=edit["seq"])
    assert driver.scene() == after_edit


def test_ctrl_z_undoes_one_command(gui: tuple[Programs, Driver, Path]) -> None:
    _, driver, person = gui
    driver.step("create_object", kind="cube", name="Box", location=[1, 0, 0])
    moved = driver.step("transform_object", name="Box", location=[2, 2, 2])
    driver.step("set_material", object="Box", material="Red", color=[1, 0, 0, 1])
    (person / "ctrl-z").touch()
    wait_until(driver, lambda es: es[-1]["kind"] == "edit", "the undo's edit")
    assert driver.scene() == driver.after[moved]  # the material is gone, the move kept


def test_the_sidebar_rewinds_to_a_step(gui: tuple[Programs, Driver, Path]) -> None:
    _, driver, person = gui
    first = driver.step("create_object", kind="cube", name="Box", location=[1, 0, 0])
    driver.step("transform_object", name="Box", location=[4, 4, 4])
    driver.step("create_object", kind="monkey", name="Head")
    (person / "rewind-to.tmp").write_text(str(first))
    (person / "rewind-to.tmp").rename(person / "rewind-to")  # whole, or not there
    entries = wait_until(
        driver,
        lambda es: es[-1]["kind"] == "rewind" and es[-1]["status"] != "started",
        "the panel's rewind",
    )
    assert entries[-1]["to_seq"] == first and entries[-1]["status"] == "success"
    assert driver.scene() == driver.after[first]
