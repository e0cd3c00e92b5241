"""The addon inside a real headless Blender (the bpy module, pump loop): scene
commands, blender-mcp compatibility in both framings, bad input, a busy main thread.

Long because each scene command and bad input is a short test in one Blender.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from daemon.protocol.messages import (
    HelloResult,
    LinkEvent,
    LinkFailure,
    LinkSuccess,
    PongResult,
)
from daemon.protocol.scene import ApplyStateResult, ObjectRecord, SceneInfo, SceneState

from . import blender_procs
from .addon_client import BARE, LENGTH, AddonClient, frame

pytestmark = pytest.mark.blender
ALL_KINDS = [
    "cube",
    "uv_sphere",
    "ico_sphere",
    "cylinder",
    "cone",
    "plane",
    "torus",
    "monkey",
    "empty",
    "camera",
    "light",
]


@pytest.fixture(scope="module")
def blender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[blender_procs.BlenderProcess]:
    blender_procs.require(blender_procs.have_bpy(), "the bpy module (pip install bpy==5.0.1)")
    home = tmp_path_factory.mktemp("blender-home")
    proc = blender_procs.start(
        blender_procs.headless_command("--factory-scene"), blender_procs.blender_env(home)
    )
    yield proc
    assert proc.stop() == 0, "".join(proc.output)[-2000:]


@pytest.fixture(scope="module")
def blender_with_code(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[blender_procs.BlenderProcess]:
    blender_procs.require(blender_procs.have_bpy(), "the bpy module (pip install bpy==5.0.1)")
    home = tmp_path_factory.mktemp("blender-home-code")
    proc = blender_procs.start(
        blender_procs.headless_command("--allow-execute-code"), blender_procs.blender_env(home)
    )
    yield proc
    proc.stop()


@pytest.fixture
def client(blender: blender_procs.BlenderProcess) -> Iterator[AddonClient]:
    with AddonClient(blender.port) as client:
        yield client


def still_serving(port: int) -> None:
    """After something bad: Blender is alive and a normal command still succeeds."""
    with AddonClient(port) as fresh:
        assert fresh.ok("get_scene_info")["name"] == "Scene"


def decode(reply: dict, struct_type: type) -> object:
    """Decode a real reply with the daemon's Structs, so the two sides cannot drift."""
    envelope = msgspec.json.decode(json.dumps(reply), type=LinkSuccess | LinkFailure)
    assert isinstance(envelope, LinkSuccess), reply
    return msgspec.json.decode(envelope.result, type=struct_type)


# --- handshake and commands -------------------------------------------------------------


def test_hello_and_ping_decode_with_the_daemon_structs(client: AddonClient) -> None:
    hello = decode(client.call("hello", {"client": "test", "protocol": 1}, id=1), HelloResult)
    assert isinstance(hello, HelloResult)
    assert hello.protocol == 1 and hello.blender_version.startswith("5.0")
    assert "create_object" in hello.commands and hello.execute_code_enabled is False
    pong = decode(client.call("ping", id=2), PongResult)
    assert isinstance(pong, PongResult) and pong.pong and pong.main_thread.busy is False


def test_every_object_kind_is_made_through_the_data_api(client: AddonClient) -> None:
    for kind in ALL_KINDS:
        record = decode(
            client.call(
                "create_object", {"kind": kind, "name": f"k_{kind}", "location": [1, 2, 3]}, id=kind
            ),
            ObjectRecord,
        )
        assert isinstance(record, ObjectRecord)
        assert record.name == f"k_{kind}" and record.data_kind == kind
        assert record.location == (1.0, 2.0, 3.0)
    state = decode(client.call("get_state", id="s"), SceneState)
    assert isinstance(state, SceneState)
    kinds = {o.name: o.data_kind for o in state.objects}
    assert all(kinds[f"k_{kind}"] == kind for kind in ALL_KINDS)
    types = {o.name: o.type for o in state.objects}
    assert (types["k_empty"], types["k_camera"], types["k_light"]) == ("EMPTY", "CAMERA", "LIGHT")
    for kind in ALL_KINDS:
        assert client.ok("delete_object", {"name": f"k_{kind}"}) == {"deleted": f"k_{kind}"}


def test_transform_rename_select_material(client: AddonClient) -> None:
    client.ok("create_object", {"kind": "cube", "name": "Box"})
    moved = client.ok(
        "transform_object",
        {"name": "Box", "location": [1, 0, 0], "rotation": [0, 0, 1.5], "scale": [2, 2, 2]},
    )
    assert moved["location"] == [1.0, 0.0, 0.0] and moved["scale"] == [2.0, 2.0, 2.0]
    renamed = client.ok("rename_object", {"name": "Box", "new_name": "Crate"})
    assert renamed["name"] == "Crate"
    chosen = client.ok("select_objects", {"names": ["Crate"]})
    assert chosen == {"selection": ["Crate"], "active": "Crate"}
    painted = client.ok(
        "set_material", {"object": "Crate", "material": "Red", "color": [1, 0, 0, 1]}
    )
    assert painted["materials"] == ["Red"]
    state = client.ok("get_state")
    assert state["material_colors"]["Red"] == [1.0, 0.0, 0.0, 1.0]
    client.ok("delete_object", {"name": "Crate"})


def test_apply_state_is_idempotent_and_reports_what_it_cannot_make(client: AddonClient) -> None:
    client.ok("create_object", {"kind": "torus", "name": "Ring", "location": [0, 0, 1]})
    snapshot = client.ok("get_state")
    snapshot["objects"].append(
        {
            "name": "Scan",
            "type": "MESH",
            "location": [0, 0, 0],
            "rotation": [0, 0, 0],
            "scale": [1, 1, 1],
            "parent": None,
            "materials": [],
            "visible": True,
            "data_kind": None,
        }
    )
    client.ok("delete_object", {"name": "Ring"})
    first = decode(client.call("apply_state", {**snapshot, "prune": True}, id=1), ApplyStateResult)
    assert isinstance(first, ApplyStateResult)
    assert first.created == ["Ring"]
    assert [s.name for s in first.skipped] == ["Scan"] and "geometry" in first.skipped[0].reason
    second = client.ok("apply_state", {**snapshot, "prune": True})
    assert second["created"] == second["updated"] == second["removed"] == []
    assert [s["name"] for s in second["skipped"]] == ["Scan"]
    client.ok("delete_object", {"name": "Ring"})


def test_apply_state_restores_visibility_of_new_and_existing_objects(
    client: AddonClient,
) -> None:
    made = client.ok("create_object", {"kind": "cube", "name": "Shown"})
    assert made["visible"] is True  # read from the object's flags, not the view layer
    client.ok("create_object", {"kind": "cone", "name": "Kept"})
    snapshot = client.ok("get_state")
    for record in snapshot["objects"]:
        if record["name"] in {"Shown", "Kept"}:
            record["visible"] = False
    client.ok("delete_object", {"name": "Shown"})
    applied = client.ok("apply_state", snapshot)
    assert applied["created"] == ["Shown"] and "Kept" in applied["updated"]
    after = {o["name"]: o["visible"] for o in client.ok("get_state")["objects"]}
    assert after["Shown"] is False and after["Kept"] is False
    again = client.ok("apply_state", snapshot)
    assert again["created"] == again["updated"] == []
    for name in ("Shown", "Kept"):
        client.ok("delete_object", {"name": name})


def test_save_and_open_blend_keep_the_addon_serving(client: AddonClient, tmp_path: Path) -> None:
    client.call("subscribe", {"events": ["scene_changed"]}, id="sub")
    client.ok("create_object", {"kind": "cone", "name": "Saved"})
    path = str(tmp_path / "scene.blend")
    saved = client.ok("save_blend", {"path": path})
    assert saved["path"] == path and saved["bytes"] > 0
    client.ok("delete_object", {"name": "Saved"})
    opened = client.ok("open_blend", {"path": path})
    assert opened["path"] == path
    assert "Saved" in [o["name"] for o in client.ok("get_scene_info")["objects"]]
    assert client.ok("ping")["pong"] is True
    # The handler survived the load: a change made after it still sends an event.
    # (Events come in order with replies, so anything older was set aside already.)
    client.events.clear()
    client.ok("delete_object", {"name": "Saved"})
    while not any("Saved" not in e["data"]["objects"] for e in client.events):
        client.events.append(client.receive())  # bounded by the socket's timeout


def test_render_thumbnail_returns_a_png(client: AddonClient) -> None:
    result = client.ok("render_thumbnail", {"width": 32, "height": 24})
    png = base64.b64decode(result["png_base64"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert (result["width"], result["height"]) == (32, 24)


def test_execute_code_is_forbidden_by_default(client: AddonClient) -> None:
    reply = client.call("execute_code", {"code": "import os; os.system('touch /tmp/pwned')"})
    assert reply["status"] == "error" and reply["code"] == "forbidden"
    assert "Allow execute_code" in reply["message"]


# --- events -----------------------------------------------------------------------------


def test_scene_changed_events_are_coalesced_and_numbered(client: AddonClient) -> None:
    client.call("subscribe", {"events": ["scene_changed"]}, id="sub")
    client.ok("create_object", {"kind": "cube", "name": "Dragged"})
    for step in range(50):  # a drag: fifty moves in quick succession
        client.send(
            {
                "id": f"m{step}",
                "type": "transform_object",
                "params": {"name": "Dragged", "location": [step * 0.1, 0, 0]},
            }
        )
    replies, events = 0, []
    while replies < 50 or not events or "Dragged" not in events[-1]["data"]["objects"]:
        message = client.receive()
        if "event" in message:
            events.append(message)
        else:
            replies += 1
    decoded = [msgspec.json.decode(json.dumps(e), type=LinkEvent) for e in events]
    assert [e.seq for e in decoded] == list(range(decoded[0].seq, decoded[0].seq + len(decoded)))
    assert len(events) < 25  # coalesced: far fewer events than changes
    client.ok("delete_object", {"name": "Dragged"})


# --- blender-mcp compatibility ----------------------------------------------------------


@pytest.mark.parametrize("framing", [BARE, LENGTH])
def test_blender_mcp_clients_work_unchanged(
    blender: blender_procs.BlenderProcess, framing: str
) -> None:
    with AddonClient(blender.port, framing) as mcp:
        mcp.send({"type": "get_scene_info", "params": {}})
        reply = mcp.receive()
        assert reply["status"] == "success" and "id" not in reply
        info = reply["result"]
        assert {"name", "object_count", "objects", "materials_count"} <= set(info)
        assert isinstance(decode(reply, SceneInfo), SceneInfo)
        mcp.send({"type": "create_object", "params": {"kind": "cube", "name": "Mcp"}})
        assert mcp.receive()["status"] == "success"
        mcp.send({"type": "get_object_info", "params": {"name": "Mcp"}})
        obj = mcp.receive()["result"]
        assert {
            "name",
            "type",
            "location",
            "rotation",
            "scale",
            "visible",
            "materials",
            "mesh",
            "world_bounding_box",
        } <= set(obj)
        mcp.send({"type": "execute_code", "params": {"code": "print(1)"}})
        refused = mcp.receive()
        assert refused["status"] == "error" and refused["message"]
        mcp.send({"type": "delete_object", "params": {"name": "Mcp"}})
        assert mcp.receive()["status"] == "success"


@pytest.mark.parametrize("framing", [BARE, LENGTH])
def test_two_requests_in_one_write_are_both_answered_in_order(
    blender: blender_procs.BlenderProcess, framing: str
) -> None:
    with AddonClient(blender.port, framing) as mcp:
        mcp.sock.sendall(
            frame({"type": "get_scene_info"}, framing) + frame({"type": "ping"}, framing)
        )
        first, second = mcp.receive(), mcp.receive()
        assert "object_count" in first["result"] and second["result"]["pong"] is True


def test_requests_without_ids_are_answered_in_order(client: AddonClient) -> None:
    client.sock.sendall(
        b'{"type": "get_state"}\n{"type": "ping"}\n{"type": "get_scene_info"}\n{"type": "ping"}\n'
    )
    replies = [client.receive() for _ in range(4)]
    assert "objects" in replies[0]["result"] and "file" in replies[0]["result"]
    assert replies[1]["result"]["pong"] and replies[3]["result"]["pong"]
    assert "object_count" in replies[2]["result"]


def test_pipelined_requests_with_ids_all_come_back(client: AddonClient) -> None:
    client.sock.sendall(b"".join(frame({"id": i, "type": "get_scene_info"}) for i in range(64)))
    assert sorted(client.receive()["id"] for _ in range(64)) == list(range(64))


def test_lookups_stay_right_through_renames_deletes_and_code_in_one_drain(
    client: AddonClient,
) -> None:
    """Sent in one write, these run in one drain of the main-thread queue, where
    names are looked up in the drain's index once enough lookups were made."""
    steps: list[tuple[str, dict[str, Any], str]] = [
        *(("create_object", {"kind": "empty", "name": f"I{n}"}, "success") for n in range(8)),
        *(("transform_object", {"name": f"I{n}", "location": [n, 0, 0]}, "success")
          for n in range(8)),
        ("rename_object", {"name": "I0", "new_name": "J0"}, "success"),
        ("transform_object", {"name": "I0", "location": [9, 9, 9]}, "not_found"),
        ("transform_object", {"name": "J0", "location": [5, 5, 5]}, "success"),
        ("delete_object", {"name": "I1"}, "success"),
        ("get_object_info", {"name": "I1"}, "not_found"),
        ("create_object", {"kind": "empty", "name": "I1"}, "success"),
        ("get_object_info", {"name": "I1"}, "success"),
        ("execute_code", {"code": "pass"}, "error"),  # forbidden here; drops the index
        ("get_object_info", {"name": "J0"}, "success"),
        *(("delete_object", {"name": name}, "success")
          for name in ["J0", "I1", *(f"I{n}" for n in range(2, 8))]),
    ]  # fmt: skip
    client.sock.sendall(
        b"".join(frame({"id": n, "type": t, "params": p}) for n, (t, p, _) in enumerate(steps))
    )
    replies = {reply["id"]: reply for reply in (client.receive() for _ in steps)}
    got = [
        replies[n]["status"] if replies[n]["status"] == "success" else replies[n]["code"]
        for n in range(len(steps))
    ]
    assert got == [expected if expected != "error" else "forbidden" for _, _, expected in steps]
    moved = replies[steps.index(("transform_object", {"name": "J0", "location": [5, 5, 5]},
                                 "success"))]["result"]  # fmt: skip
    assert moved["name"] == "J0" and moved["location"] == [5.0, 5.0, 5.0]


def test_thousand_objects_through_the_data_api(client: AddonClient) -> None:
    client.sock.sendall(
        b"".join(
            frame({"id": i, "type": "create_object", "params": {"kind": "cube", "name": f"B{i}"}})
            for i in range(1000)
        )
    )
    replies = [client.receive() for _ in range(1000)]
    assert all(r["status"] == "success" for r in replies)
    assert client.ok("get_scene_info")["object_count"] >= 1000
    state = client.ok("get_state")
    client.ok(
        "apply_state",
        {
            **state,
            "objects": [o for o in state["objects"] if not o["name"].startswith("B")],
            "prune": True,
        },
    )
    assert not any(o["name"].startswith("B") for o in client.ok("get_scene_info")["objects"])


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json}\n", "bad_request"),
        (b"[1, 2, 3]\n", "bad_request"),
        (b"hello there\n", "bad_request"),
        (b'{"params": {}}\n', "bad_request"),
        (b'{"type": 5}\n', "bad_request"),
        (b'{"type": "teleport"}\n', "unknown_command"),
        (
            b'{"type": "create_object", "params": {"kind": "cube", "location": "here"}}\n',
            "invalid_params",
        ),
        (b'{"type": "create_object", "params": [1]}\n', "invalid_params"),
        (b'{"type": "create_object", "params": {"kind": 7}}\n', "invalid_params"),
        (b'{"type": "transform_object", "params": {"name": "Nope"}}\n', "not_found"),
        (
            b'{"type": "set_material", "params": {"object": "Camera", "material": "M"}}\n',
            "not_found",
        ),
        (b'{"id": [1], "type": "ping"}\n', "bad_request"),
        (b'{"type": "open_blend", "params": {"path": "relative.blend"}}\n', "invalid_params"),
        (b'{"type": "select_objects", "params": {"names": "Cube"}}\n', "invalid_params"),
        (b'{"type": "render_thumbnail", "params": {"width": 100000}}\n', "invalid_params"),
        (b'{"type": "apply_state", "params": {"objects": [{"name": 1}]}}\n', "invalid_params"),
    ],
)
def test_bad_input_gets_its_error_code_and_the_connection_goes_on(
    client: AddonClient, blender: blender_procs.BlenderProcess, data: bytes, code: str
) -> None:
    client.sock.sendall(data)
    reply = client.receive()
    assert reply["status"] == "error" and reply["code"] == code, reply
    assert reply["message"]
    assert client.ok("ping")["pong"] is True  # same connection still served
    still_serving(blender.port)


def test_command_that_raises_inside_blender_is_an_error_reply(
    client: AddonClient, blender: blender_procs.BlenderProcess, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.blend"
    broken.write_bytes(b"BLENDER but not really" * 10)
    reply = client.call("open_blend", {"path": str(broken)})
    assert reply["status"] == "error" and reply["code"] in ("invalid_params", "internal")
    still_serving(blender.port)


@pytest.mark.parametrize("framing", ["ndjson", LENGTH])
def test_oversized_frame_is_refused_then_closed(
    blender: blender_procs.BlenderProcess, framing: str
) -> None:
    with AddonClient(blender.port, framing) as big:
        if framing == LENGTH:
            big.sock.sendall(b"\x7f\xff\xff\xff")  # claims a 2 GiB frame
        else:
            with contextlib.suppress(OSError):  # the addon may close before taking it all
                big.sock.sendall(b'{"type": "ping", "pad": "' + b"x" * (17 * 1024 * 1024))
        reply = big.receive()
        assert reply["code"] == "bad_request" and "over the limit" in reply["message"]
        with pytest.raises((EOFError, OSError)):
            big.receive()
    still_serving(blender.port)


def test_client_that_disconnects_mid_request_harms_nothing(
    blender: blender_procs.BlenderProcess,
) -> None:
    half = socket.create_connection(("127.0.0.1", blender.port))
    half.sendall(b'{"type": "create_object", "params": {"ki')
    half.close()
    gone = socket.create_connection(("127.0.0.1", blender.port))
    gone.sendall(b"".join(frame({"id": i, "type": "get_state"}) for i in range(200)))
    gone.close()  # hangs up with 200 requests queued for the main thread
    still_serving(blender.port)


# --- busy main thread -------------------------------------------------------------------


def test_ping_answers_within_milliseconds_while_main_thread_is_busy(
    blender_with_code: blender_procs.BlenderProcess,
) -> None:
    busy_s = 3.0
    with (
        AddonClient(blender_with_code.port) as worker,
        AddonClient(blender_with_code.port) as probe,
    ):
        assert probe.ok("hello", {"client": "t"})["execute_code_enabled"] is True
        worker.send(
            {
                "id": "sleep",
                "type": "execute_code",
                "params": {"code": f"import time\ntime.sleep({busy_s})"},
            }
        )
        pongs = []
        started = time.monotonic()
        while time.monotonic() - started < busy_s - 0.5:
            sent = time.monotonic()
            result = probe.ok("ping")
            pongs.append((sent - started, (time.monotonic() - sent) * 1000, result["main_thread"]))
            threading.Event().wait(0.05)  # pace the probe: 20 pings a second, as a heartbeat might
        assert worker.receive()["result"] == {"executed": True, "result": ""}
    after_threshold = [(at, ms, main) for at, ms, main in pongs if at > 0.5]
    assert len(after_threshold) >= 20
    assert all(main["busy"] for _, _, main in after_threshold)
    assert all(main["busy_for_ms"] > 250 for _, _, main in after_threshold)
    latencies = sorted(ms for _, ms, _ in pongs)
    print(
        f"pong latency while busy: p50 {latencies[len(latencies) // 2]:.2f} ms, "
        f"max {latencies[-1]:.2f} ms over {len(latencies)} pings"
    )
    assert latencies[-1] < 1000  # a bound for the test, not a performance target (bench/)


def test_world_bounding_box_follows_a_transform_headless(
    blender: blender_procs.BlenderProcess,
) -> None:
    """Headless, nothing redraws: the world matrix must be brought up to date."""
    with AddonClient(blender.port) as client:
        client.ok("create_object", {"kind": "cube", "name": "Moved"})
        client.ok("transform_object", {"name": "Moved", "location": [5, 0, 0], "scale": [2, 1, 1]})
        low, high = client.ok("get_object_info", {"name": "Moved"})["world_bounding_box"]
        assert [round(v, 5) for v in low] == [3, -1, -1]
        assert [round(v, 5) for v in high] == [7, 1, 1]
        client.ok("delete_object", {"name": "Moved"})


def test_daemon_endpoint_keeps_only_an_absolute_path(
    blender: blender_procs.BlenderProcess,
) -> None:
    with AddonClient(blender.port) as client:
        for bad in ("relative/dir", "", 7, "/tmp/\x07bell", "/" + "x" * 5000):
            reply = client.call("daemon_endpoint", {"data_dir": bad})
            assert reply["status"] == "error" and reply["code"] == "invalid_params", bad
        assert client.ok("daemon_endpoint", {"data_dir": "/tmp/some daemon dir"}) == {}
