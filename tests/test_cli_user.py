"""The CLI as a user meets it (issue 16), through the real programs: `blender-session`
as a subprocess, the real daemon, a real headless Blender."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from .programs import Programs

pytestmark = pytest.mark.blender


def world_location(programs: Programs, session: str, name: str) -> list[float]:
    info = programs.json("cmd", "-s", session, "get_object_info", f"name={name}")["result"]
    box = info["world_bounding_box"]  # the centre of a cube's box is where it is
    return [round((low + high) / 2, 4) for low, high in zip(box[0], box[1], strict=True)]


def test_parenting_keeps_the_world_transform_and_survives_a_restore(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session = programs.json("open", "--name", "table")["session_id"]

    def cmd(*args: str) -> dict:
        return programs.json("cmd", "-s", session, *args)

    cmd("create_object", "kind=cube", "name=TableTop", "location=[0,0,2]", "scale=[2,2,0.2]")
    leg = cmd("create_object", "kind=cube", "name=Leg1", "location=[1,1,1]", "parent=TableTop")
    assert leg["result"]["parent"] == "TableTop"
    assert world_location(programs, session, "Leg1") == [1.0, 1.0, 1.0]  # kept in the world
    cmd("transform_object", "name=TableTop", "location=[5,0,2]")
    assert world_location(programs, session, "Leg1") == [6.0, 1.0, 1.0]  # moves with it
    cmd("create_object", "kind=cube", "name=Leg2", "location=[1,0,0]", "parent=TableTop",
        "keep_transform=false")  # fmt: skip
    assert world_location(programs, session, "Leg2") == [7.0, 0.0, 2.0]  # relative to it
    cleared = cmd("transform_object", "name=Leg1", "parent=null")["result"]
    assert cleared["parent"] is None
    assert world_location(programs, session, "Leg1") == [6.0, 1.0, 1.0]

    loop = programs.cli("cmd", "-s", session, "transform_object", "name=TableTop", "parent=Leg2",
                        check=False)  # fmt: skip
    assert loop.returncode == 1 and "cannot be the parent" in loop.stderr
    # Unknown keys are refused, naming the key and the accepted ones (issue 16 item 5).
    typo = programs.cli("cmd", "-s", session, "transform_object", "name=Leg1", "locaton=[5,5,5]",
                        check=False)  # fmt: skip
    assert typo.returncode == 1
    assert "locaton" in typo.stderr and "location" in typo.stderr and "parent" in typo.stderr

    programs.json("close", session)
    for path in ("state", "replay"):
        restored = programs.json("restore", "table", "--path", path, "--name", f"table-{path}")
        again = restored["session_id"]
        assert world_location(programs, again, "Leg2") == [7.0, 0.0, 2.0], path
        assert world_location(programs, again, "Leg1") == [6.0, 1.0, 1.0], path
        info = programs.json("cmd", "-s", again, "get_object_info", "name=Leg2")["result"]
        assert info["parent"] == "TableTop" and math.isclose(info["location"][0], 1.0)
        programs.json("close", again)


def test_a_restored_session_is_named_and_says_why_its_path(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    first = programs.json("open", "--name", "scene")["session_id"]
    programs.json("cmd", "-s", first, "create_object", "kind=cube", "name=A")
    programs.json("close", first)
    plan = programs.json("restore", "scene", "--dry-run")
    assert plan["session_id"] == "" and plan["path"] == "blend"
    assert programs.json("status")["open_sessions"] == []  # a dry run opens nothing
    other = programs.json("open", "--name", "busy")["session_id"]
    restored = programs.json("restore", "scene")
    assert restored["path"] == "blend" and "the exact scene" in restored["notes"][0]
    assert any(other in note and "stays open" in note for note in restored["notes"])
    names = {s["name"] for s in programs.json("status")["open_sessions"]}
    assert names == {"busy", "scene (restored)"}
    programs.json("close", "scene (restored)")
    again = programs.json("restore", "scene")["session_id"]
    assert programs.json("show", again)["data"]["name"] == "scene (restored 2)"
    shown = programs.cli("restore", "scene", "--dry-run").stdout
    assert shown.startswith(f"{first} would be restored via blend")


def test_usage_errors_exit_2_and_json_errors_are_one_object(
    programs: Programs, tmp_path: Path
) -> None:
    programs.start_daemon()
    bad = programs.cli("--json", "cmd", "-s", "x", "create_object", "kind", check=False)
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["error"]["code"] == "usage"
