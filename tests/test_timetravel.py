"""Time travel end to end: the real daemon and CLI against the real addon in a real
headless Blender (the bpy module). A mixed history is recorded with the scene read
right after each step; rewinding to a step, restoring at a step and diffing two
steps must agree with what was read then."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from daemon.clients.client import ControlClient, find_endpoint
from daemon.protocol.scene import OBJECT_KINDS

from .addon_client import AddonClient
from .helpers import object_records
from .programs import Programs

pytestmark = pytest.mark.blender

EXECUTE_CODE = """
import bpy
mesh = bpy.data.meshes.new("CodeMesh")
made = bpy.data.objects.new("FromCode", mesh)
bpy.context.scene.collection.objects.link(made)
made.location = (4.0, -2.0, 1.5)
bpy.data.objects["Thing_cube"].location = (9.0, 9.0, 9.0)
"""


class Driver:
    def __init__(self, client: ControlClient, session_id: str) -> None:
        self.client = client
        self.session_id = session_id
        self.after: dict[int, dict[str, tuple[Any, ...]]] = {}  # seq -> the scene then

    def call(self, op: str, **params: Any) -> Any:
        return msgspec.json.decode(self.client.call(op, {"session_id": self.session_id, **params}))

    def scene(self) -> dict[str, tuple[Any, ...]]:
        return object_records(self.call("session.state")["scene"])

    def step(self, type: str, **params: Any) -> int:
        seq: int = self.call("session.command", type=type, params=params)["seq"]
        self.after[seq] = self.scene()
        return seq


@pytest.fixture
def driven(programs: Programs) -> Iterator[tuple[Programs, Driver]]:
    programs.start_blender("--allow-execute-code")
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "travel")["session_id"]
    host, port, token = find_endpoint(programs.data_dir)
    with ControlClient(host, port, token) as client:
        driver = Driver(client, session_id)
        driver.after[0] = driver.scene()
        yield programs, driver


def mixed_history(driver: Driver) -> None:
    for kind in OBJECT_KINDS:
        driver.step("create_object", kind=kind, name=f"Thing_{kind}", location=[1, 2, 3])
    driver.step("transform_object", name="Thing_cube", location=[0, 0, 5], scale=[2, 1, 1])
    driver.step("set_material", object="Thing_monkey", material="Gold", color=[1, 0.8, 0, 1])
    driver.step("rename_object", name="Thing_torus", new_name="Halo")
    driver.step("delete_object", name="Thing_cone")
    driver.step("execute_code", code=EXECUTE_CODE)
    driver.step("transform_object", name="FromCode", rotation=[0.5, 0, 0])
    driver.step("create_object", kind="cube", name="Late", location=[-1, -1, -1])


def test_rewind_to_each_step_gives_the_scene_seen_right_after_it(
    driven: tuple[Programs, Driver],
) -> None:
    _, driver = driven
    mixed_history(driver)
    last = max(driver.after)
    targets = [0, 3, len(OBJECT_KINDS), last - 3, last - 2, last - 1, 5]
    for to_seq in targets:
        rewound = driver.call("session.rewind", to_seq=to_seq)
        assert rewound["exact"], rewound
        assert driver.scene() == driver.after[to_seq], f"after rewinding to step {to_seq}"
    # Go on from there; a step from before the rewinds stays reachable.
    more = driver.step("create_object", kind="plane", name="AfterRewind")
    assert set(driver.after[more]) == set(driver.after[5]) | {"AfterRewind"}
    driver.call("session.rewind", to_seq=last)
    assert driver.scene() == driver.after[last]
    driver.call("session.rewind", to_seq=more)
    assert driver.scene() == driver.after[more]
    # The timeline says what happened, in order.
    timeline = driver.call("session.timeline", limit=10_000)
    kinds = [entry["kind"] for entry in timeline["entries"]]
    assert kinds.count("rewind") == len(targets) + 2
    assert kinds[0] == "checkpoint" and "command" in kinds
    opaque = [e for e in timeline["entries"] if e.get("type") == "execute_code"]
    assert len(opaque) == 1
    checkpoints = {e["seq"] for e in timeline["entries"] if e["kind"] == "checkpoint"}
    assert opaque[0]["seq"] in checkpoints  # taken right behind the opaque command


def test_diff_names_exactly_the_objects_that_changed(driven: tuple[Programs, Driver]) -> None:
    programs, driver = driven
    mixed_history(driver)
    last = max(driver.after)
    first = len(OBJECT_KINDS)  # every kind created
    shown = programs.json("diff", driver.session_id, "--from", str(first), "--to", str(last))
    assert sorted(_names(shown["added"])) == ["FromCode", "Late"]
    assert _names(shown["removed"]) == ["Thing_cone"]
    assert [(r["from_name"], r["to_name"]) for r in shown["renamed"]] == [("Thing_torus", "Halo")]
    assert sorted(c["name"] for c in shown["changed"]) == ["Thing_cube", "Thing_monkey"]
    cube = next(c for c in shown["changed"] if c["name"] == "Thing_cube")
    assert cube["fields"]["location"]["after"] == [9.0, 9.0, 9.0]  # moved by the code
    assert shown["exact"]
    nothing = driver.call("session.diff", from_seq=last, to_seq=last)
    assert (nothing["added"], nothing["removed"], nothing["changed"]) == ([], [], [])
    text = programs.cli("diff", driver.session_id, "--from", str(first)).stdout
    assert "+ FromCode" in text and "- Thing_cone" in text and "Thing_torus -> Halo" in text


def _names(objects: list[Any]) -> list[str]:
    return [o["name"] for o in objects]


def test_restore_at_a_step_of_a_closed_session(driven: tuple[Programs, Driver]) -> None:
    programs, driver = driven
    mixed_history(driver)
    last = max(driver.after)
    programs.json("close", driver.session_id)
    for at in (4, last - 2, last):
        restored = programs.json("restore", driver.session_id, "--at", str(at))
        assert restored["path"] == "checkpoint" and restored["at_seq"] == at
        new = Driver(driver.client, restored["session_id"])
        assert new.scene() == driver.after[at], f"restored at step {at}"
        programs.json("close", restored["session_id"])
        # The final scenes of the two sessions: the same only when restored at the end.
        compared = programs.json("diff", driver.session_id, "--other", restored["session_id"])
        same = not (compared["added"] or compared["removed"] or compared["changed"])
        assert same == (at == last), compared
    refused = programs.cli("restore", driver.session_id, "--at", str(last + 1), check=False)
    assert refused.returncode == 1 and "invalid_params" in refused.stderr


def test_undo_and_the_cli(driven: tuple[Programs, Driver]) -> None:
    programs, driver = driven
    a = driver.step("create_object", kind="cube", name="A")
    driver.step("get_scene_info")  # changes nothing: not a step undo counts
    b = driver.step("create_object", kind="cube", name="B")
    driver.step("transform_object", name="B", location=[3, 3, 3])
    undone = programs.json("undo", "2")
    assert undone["to_seq"] == b - 1
    assert driver.scene() == driver.after[a]
    labelled = programs.json("checkpoint", "before C")
    assert labelled["label"] == "before C" and labelled["bytes"] > 0
    driver.step("create_object", kind="cube", name="C")
    programs.json("undo")  # back before C, the rewind itself is not undone
    assert set(driver.scene()) == {"A"}
    log = programs.cli("log").stdout
    assert "rewind" in log and "before C" in log and "create_object" in log
    lines = [json.loads(line) for line in programs.cli("--json", "log").stdout.splitlines()]
    assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)
    refused = programs.cli("rewind", "--to", "999", check=False)
    assert refused.returncode == 1 and "invalid_params" in refused.stderr
    too_many = programs.cli("undo", "50", check=False)
    assert too_many.returncode == 1 and "invalid_params" in too_many.stderr


def test_an_edit_beside_the_daemon_is_in_the_timeline_and_rewound_exactly(
    driven: tuple[Programs, Driver],
) -> None:
    programs, driver = driven
    before = driver.step("create_object", kind="cube", name="Box")
    with AddonClient(programs.addon_port) as other:  # straight to the addon
        other.ok("create_object", {"kind": "uv_sphere", "name": "Sneaky"})
        other.ok("transform_object", {"name": "Box", "location": [7, 7, 7]})
        other.ok("create_object", {"kind": "cone", "name": "Doomed"})
        other.ok("rename_object", {"name": "Doomed", "new_name": "Renamed"})
        other.ok(
            "execute_code", {"code": "import bpy\nbpy.data.objects['Renamed'].scale = (2, 2, 2)"}
        )
        other.ok("delete_object", {"name": "Renamed"})
    edits = wait_for_edits(driver, 6)
    assert {"Sneaky", "Box", "Doomed", "Renamed"} <= {n for e in edits for n in e["objects"]}
    after_edits = driver.scene()
    last = driver.call("session.timeline", limit=10_000)["last_seq"]
    driver.step("delete_object", name="Sneaky")
    driver.call("session.rewind", to_seq=before)
    assert driver.scene() == driver.after[before]
    driver.call("session.rewind", to_seq=last)
    assert driver.scene() == after_edits


def wait_for_edits(driver: Driver, count: int) -> list[Any]:
    """The addon reports edits made beside the daemon as they happen: wait for them,
    bounded in time; between looks, a round trip through Blender's main thread."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entries = driver.call("session.timeline", limit=10_000)["entries"]
        edits = [e for e in entries if e["kind"] == "edit"]
        if len(edits) >= count:
            return edits
        driver.scene()
    raise AssertionError("the edits never reached the timeline")


def test_periodic_checkpoints_bound_what_a_rewind_replays(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon("--checkpoint-every", "5", "--checkpoint-budget", "100")
    programs.wait_connected()
    session_id = programs.json("open", "--name", "periodic")["session_id"]
    host, port, token = find_endpoint(programs.data_dir)
    with ControlClient(host, port, token) as client:
        driver = Driver(client, session_id)
        driver.step("create_object", kind="cube", name="Box")
        for n in range(13):
            driver.step("transform_object", name="Box", location=[n, 0, 0])
        entries = driver.call("session.timeline", limit=10_000)["entries"]
        periodic = [e["seq"] for e in entries if e["summary"] == "checkpoint (periodic)"]
        assert periodic == [5, 10], entries
        rewound = driver.call("session.rewind", to_seq=12)
        assert rewound["base_seq"] == 10 and rewound["replayed"] == 2
        assert driver.scene() == driver.after[12]


def test_a_rewind_the_daemon_dies_in_is_finished_when_it_comes_back(programs: Programs) -> None:
    """The rewind's `started` line is in the journal before Blender is touched; a daemon
    SIGKILLed while Blender replays finds it at its next start and finishes it, so the
    scene and the record agree again."""
    moves = 6000  # a replay long enough to be killed in (no periodic checkpoints)
    programs.start_blender()
    programs.start_daemon("--checkpoint-every", "0")
    programs.wait_connected()
    session_id = programs.json("open", "--name", "interrupted")["session_id"]
    host, port, token = find_endpoint(programs.data_dir)
    with ControlClient(host, port, token) as client:
        driver = Driver(client, session_id)
        driver.step("create_object", kind="cube", name="Box")
        for n in range(moves):
            driver.call("session.command", type="transform_object",
                        params={"name": "Box", "location": [n % 97, n % 89, 1]})  # fmt: skip
        target = moves  # the Box where the second-to-last move put it
    journal = programs.data_dir / "sessions" / f"{session_id}.journal"
    rewinding = threading.Thread(
        target=lambda: programs.cli("rewind", "--to", str(target), check=False), daemon=True
    )
    rewinding.start()
    deadline = time.monotonic() + 60
    while b'"status":"started"' not in journal.read_bytes()[-4096:]:
        assert time.monotonic() < deadline, "the rewind never started"
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGKILL)  # while Blender replays
    programs.daemon.wait()
    rewinding.join(60)
    programs.start_daemon("--checkpoint-every", "0")
    programs.wait_connected()
    with ControlClient(*find_endpoint(programs.data_dir)) as client:
        driver = Driver(client, session_id)
        deadline = time.monotonic() + 60
        while True:
            entries = driver.call("session.timeline", after_seq=moves, limit=100)["entries"]
            rewinds = [e for e in entries if e["kind"] == "rewind"]
            if rewinds and rewinds[-1]["status"] != "started":
                break
            assert time.monotonic() < deadline, f"the rewind was never finished: {entries}"
        assert rewinds[-1]["status"] == "success" and rewinds[-1]["to_seq"] == target
        n = moves - 2  # step `moves` is the (moves - 1)-th transform: n = moves - 2
        assert driver.scene()["Box"][2] == [float(n % 97), float(n % 89), 1.0]
    assert any('"interrupted_rewind_finished"' in line for line in programs.daemon_log)
