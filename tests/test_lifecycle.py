"""The session lifecycle end to end against real headless Blenders: a scene of every
kind of object, with materials, a parent and a selection, closed, Blender replaced,
and restored through each of the three paths."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from . import blender_procs
from .programs import Programs, free_port

pytestmark = pytest.mark.blender
KINDS = ["cube", "uv_sphere", "ico_sphere", "cylinder", "cone", "plane", "torus", "monkey",
         "empty", "camera", "light"]  # fmt: skip


def records(state: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What must come back: names, types, transforms (to 1e-5), materials, parents."""
    return {
        o["name"]: (
            o["type"],
            tuple(round(v, 5) for v in (*o["location"], *o["rotation"], *o["scale"])),
            tuple(o["materials"]),
            o["parent"],
        )
        for o in state["objects"]
    }


def build_scene(programs: Programs) -> dict[str, Any]:
    for index, kind in enumerate(KINDS):
        programs.cli(
            "cmd",
            "create_object",
            f"kind={kind}",
            f"name=K_{kind}",
            f"location=[{index},{index * 0.5},0.25]",
            f"rotation=[0.1,0.2,{index * 0.1}]",
        )
    programs.cli("cmd", "transform_object", "name=K_torus", "scale=[1.5,1.5,0.5]")
    programs.cli("cmd", "set_material", "object=K_cube", "material=Red", "color=[1,0,0,1]")
    programs.cli("cmd", "set_material", "object=K_monkey", "material=Gold", "color=[1,0.8,0.1,1]")
    state = programs.json("state")["scene"]
    for obj in state["objects"]:
        if obj["name"] == "K_cone":
            obj["parent"] = "K_cube"
    programs.cli("cmd", "--params", json.dumps({**state, "prune": False}), "apply_state")
    programs.cli("cmd", "select_objects", 'names=["K_monkey","K_torus"]', "active=K_torus")
    return programs.json("state")["scene"]


def test_every_restore_path_gives_back_the_same_scene(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    programs.json("open", "--name", "everything")
    programs.cli("set-data", "brief", '{"client": "ACME"}')
    before = build_scene(programs)
    assert records(before)["K_cone"][3] == "K_cube"
    closed = programs.json("close")
    record = json.loads(Path(closed["path"]).read_text())["data"]
    sessions = programs.data_dir / "sessions"
    assert record["snapshot"] == {
        "blend": f"{record['session_id']}.blend",
        "blender_version": "5.0.1",
        "thumbnail": f"{record['session_id']}.png",
    }
    head = (sessions / record["snapshot"]["blend"]).read_bytes()[:7]
    assert head == b"BLENDER" or head.startswith(b"\x28\xb5\x2f\xfd")  # plain or zstd
    # The thumbnail is rendered after close answered; the thumbnail op waits for it.
    shown = programs.data_dir.parent / "shown.png"
    programs.cli("thumbnail", record["session_id"], "-o", str(shown))
    assert (sessions / record["snapshot"]["thumbnail"]).read_bytes() == shown.read_bytes()
    assert shown.read_bytes()[:4] == b"\x89PNG"

    assert programs.blender is not None
    programs.blender.kill()
    programs.start_blender()  # a fresh Blender: the default scene, nothing of ours
    programs.wait_connected()
    for path in ("blend", "state", "replay", "blend"):  # the last: restoring twice
        restored = programs.json("restore", "everything", "--path", path)
        assert restored["path"] == path and restored["restored_from"] == record["session_id"]
        assert restored["skipped"] == [], restored
        after = programs.json("state", restored["session_id"])["scene"]
        assert records(after) == records(before), path
        assert sorted(after["selection"]) == sorted(before["selection"]), path
        assert after["active"] == before["active"] == "K_torus", path
        shown = programs.json("show", restored["session_id"])["data"]
        assert shown["restored_from"] == record["session_id"]
        assert shown["data"] == {"brief": {"client": "ACME"}}
        programs.json("close", restored["session_id"])
    auto = programs.json("restore", "everything")
    assert auto["path"] == "blend"  # the best source available


def test_restore_into_older_blender_falls_back_to_the_state_snapshot(programs: Programs) -> None:
    blender_procs.require(blender_procs.have_gui_blender(), "Debian's blender (3.4)")
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    programs.json("open", "--name", "newer")
    programs.cli("cmd", "create_object", "kind=torus", "name=Ring", "location=[0,1,2]")
    closed = programs.json("close")
    record = json.loads(Path(closed["path"]).read_text())["data"]
    assert record["snapshot"]["blender_version"] == "5.0.1"
    assert programs.blender is not None
    programs.blender.kill()
    programs.start_blender("--blender", "blender")  # Debian's 3.4, headless
    programs.wait_connected("3.4.1")
    restored = programs.json("restore", "newer")
    assert restored["path"] == "state"
    assert any("written by Blender 5.0.1" in note and "3.4.1" in note for note in restored["notes"])
    after = programs.json("state", restored["session_id"])["scene"]
    assert records(after)["Ring"] == records(record["state"]["scene"])["Ring"]
    refused = programs.cli("restore", "newer", "--path", "blend", check=False)
    assert refused.returncode == 1 and "cannot open newer files" in refused.stderr


def test_export_import_thumbnail_and_cleanup_through_the_cli(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "portable")["session_id"]
    programs.cli("cmd", "create_object", "kind=monkey", "name=Suzanne")
    live = programs.data_dir.parent / "live.png"
    programs.cli("thumbnail", "-o", str(live))  # the open session: rendered now
    assert live.read_bytes()[:4] == b"\x89PNG"
    programs.json("close")
    saved = programs.data_dir.parent / "saved.png"
    programs.cli("thumbnail", "portable", "-o", str(saved))  # closed: the stored one
    assert saved.read_bytes()[:4] == b"\x89PNG"
    assert "thumbnail:" in programs.cli("show", "portable").stdout

    archive = programs.data_dir.parent / "portable.tar.gz"
    exported = programs.json("export", "portable", "-o", str(archive))
    assert exported["session_ids"] == [session_id] and archive.stat().st_size > 1000
    dry = programs.json("cleanup", "--keep", "0", "--dry-run")
    assert dry["deleted"] == [session_id] and programs.json("list")["sessions"]
    refused = programs.cli("cleanup", "--keep", "0", check=False)  # every closed session
    assert refused.returncode == 1 and "--yes" in refused.stderr
    programs.json("cleanup", "--keep", "0", "--yes")
    assert programs.json("list")["sessions"] == []
    imported = programs.json("import", str(archive))
    assert imported["imported"] == [{"from_id": session_id, "to_id": session_id}]
    restored = programs.json("restore", "portable")
    assert restored["path"] == "blend" and "Suzanne" in restored["created"]


def test_idle_session_is_closed_with_its_snapshots(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon("--idle-ttl-minutes", "0.01")  # 0.6 s
    programs.wait_connected()
    session_id = programs.json("open", "--name", "idle")["session_id"]
    programs.cli("cmd", "create_object", "kind=cone", "name=Left")
    record = programs.data_dir / "sessions" / f"{session_id}.json"
    deadline = time.monotonic() + 60
    while not record.exists():  # each status call is a full CLI run: its own pacing
        assert time.monotonic() < deadline, "the idle session was never closed"
        programs.cli("status")
    data = json.loads(record.read_text())["data"]
    assert data["closed_at"] is not None and data["state"]["objects"] == ["Left"]
    assert data["snapshot"]["blend"] == f"{session_id}.blend"


def test_two_blenders_at_once_each_session_bound_to_one(programs: Programs) -> None:
    programs.start_blender()
    first_blender = programs.blender
    first_port = programs.addon_port
    programs.addon_port = free_port()
    programs.start_blender()
    second_port = programs.addon_port
    programs.addon_port = first_port
    try:
        programs.start_daemon("--addon-port", str(first_port), "--addon-port", str(second_port))
        deadline = time.monotonic() + 60
        while not all(b["connected"] for b in programs.json("status")["blenders"]):
            assert time.monotonic() < deadline, "the daemon did not connect to both"
        one = programs.json("open", "--name", "one")["session_id"]
        two = programs.json("open", "--name", "two", "--blender", str(second_port))["session_id"]
        programs.cli("cmd", "-s", "one", "create_object", "kind=cube", "name=OnlyInOne")
        programs.cli("cmd", "-s", "two", "create_object", "kind=torus", "name=OnlyInTwo")
        names_one = {o["name"] for o in programs.json("state", one)["scene"]["objects"]}
        names_two = {o["name"] for o in programs.json("state", two)["scene"]["objects"]}
        assert "OnlyInOne" in names_one and "OnlyInOne" not in names_two
        assert "OnlyInTwo" in names_two and "OnlyInTwo" not in names_one
    finally:
        if first_blender is not None:
            first_blender.stop()
