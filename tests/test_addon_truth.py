"""Issue 12's addon items in a real headless Blender: what the addon echoes stays
readable (18), a malformed request's id is echoed (19), requests read before a
half-close are all answered (20), bad params never reach bpy (23), apply_state reports
exactly what it applied (23), and what the addon made leaves no orphan data (24).

This Blender allows execute_code, only so the tests can count Blender's data blocks.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from daemon.protocol.messages import HelloResult, PongResult

from . import blender_procs
from .addon_client import AddonClient

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def blender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[blender_procs.BlenderProcess]:
    blender_procs.require(blender_procs.have_bpy(), "the bpy module (pip install bpy==5.0.1)")
    home = tmp_path_factory.mktemp("blender-home")
    proc = blender_procs.start(
        blender_procs.headless_command("--factory-scene", "--allow-execute-code"),
        blender_procs.blender_env(home),
    )
    yield proc
    assert proc.stop() == 0, "".join(proc.output)[-2000:]


@pytest.fixture
def client(blender: blender_procs.BlenderProcess) -> Iterator[AddonClient]:
    with AddonClient(blender.port) as client:
        client.ok("apply_state", {"objects": [], "prune": True})
        yield client


def data_blocks(client: AddonClient) -> dict[str, int]:
    code = (
        "import json; print(json.dumps({'meshes': len(bpy.data.meshes), "
        "'materials': len(bpy.data.materials), 'cameras': len(bpy.data.cameras), "
        "'lights': len(bpy.data.lights), 'objects': len(bpy.data.objects)}))"
    )
    counts: dict[str, int] = json.loads(client.ok("execute_code", {"code": code})["result"])
    return counts


def test_attach_session_keeps_only_what_the_daemon_can_read_back(client: AddonClient) -> None:
    """Item 18: a lone surrogate in an attached id would be echoed in every hello and
    ping, and the daemon could not read those any more."""
    for params in (
        {"session_id": "\ud800"},
        {"session_id": "scene-x"},
        {"session_id": "scene-20260101-000000-0000abcd", "name": "\ud800"},
        {"session_id": "scene-20260101-000000-0000abcd", "name": "tab\there"},
    ):
        reply = client.call("attach_session", params, id="a")
        assert reply["status"] == "error" and reply["code"] == "invalid_params", params
    for kind, schema in (("hello", HelloResult), ("ping", PongResult)):
        raw = json.dumps(client.ok(kind, {"client": "t"} if kind == "hello" else None))
        assert isinstance(msgspec.json.decode(raw, type=schema), schema)


def test_a_malformed_request_is_answered_with_its_id(blender: blender_procs.BlenderProcess) -> None:
    """Item 19: the id of a request that is not valid JSON, where it can be read."""
    with socket.create_connection(("127.0.0.1", blender.port), timeout=30) as sock:
        sock.sendall(b'{"id": 77, "type": "get_scene_info", "params": {"x": "\xff"}}\n')
        reply = json.loads(sock.makefile("rb").readline())
    assert reply["id"] == 77 and reply["code"] == "bad_request"


def test_every_request_read_before_a_half_close_is_answered(
    blender: blender_procs.BlenderProcess,
) -> None:
    """Item 20: `nc -N` style: send, shut down the write side, read everything."""
    requests = b"".join(
        json.dumps({"id": n, "type": "create_object",
                    "params": {"kind": "empty", "name": f"HalfClose{n}"}}).encode() + b"\n"
        for n in range(20)
    )  # fmt: skip
    with socket.create_connection(("127.0.0.1", blender.port), timeout=30) as sock:
        sock.sendall(requests)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    replies = [json.loads(line) for line in received.splitlines()]
    assert sorted(r["id"] for r in replies) == list(range(20))
    assert all(r["status"] == "success" for r in replies)


BAD_PARAMS: list[tuple[str, dict[str, Any]]] = [
    ("create_object", {"kind": "cube", "name": "\ud800"}),
    ("create_object", {"kind": "cube", "name": "a\x00b"}),
    ("create_object", {"kind": "cube", "location": [1e309, 0, 0]}),
    ("create_object", {"kind": "cube", "location": [10**309, 0, 0]}),
    ("create_object", {"kind": "cube", "scale": [1e31, 1, 1]}),
    ("create_object", {"kind": "cube", "locaton": [5, 5, 5]}),
    ("transform_object", {"name": "X", "parnet": "Y"}),
    ("transform_object", {"name": "X", "keep_transform": "yes"}),
    ("select_objects", {"names": "Cube"}),
    ("select_objects", {"names": [1, 2]}),
    ("set_material", {"object": "X", "material": "M", "color": "red"}),
    ("apply_state", {"frame": 2**40}),
    ("apply_state", {"selection": "Cube"}),
    ("apply_state", {"material_colors": {"M": [2, 0, 0, 1]}}),
    ("apply_state", {"material_colors": ["M"]}),
    (
        "apply_state",
        {
            "objects": [
                _rec := {
                    "name": "A",
                    "type": "MESH",
                    "location": [0, 0, 0],
                    "rotation": [0, 0, 0],
                    "scale": [1, 1, 1],
                    "data_kind": "cube",
                    "parent": "A",
                }
            ]
        },
    ),
    (
        "apply_state",
        {"objects": [_rec | {"parent": None}, _rec | {"type": "EMPTY", "parent": None}]},
    ),
    ("apply_state", {"objects": [_rec | {"parent": None, "location": [10**309, 0, 0]}]}),
    ("render_thumbnail", {"width": True}),
]


@pytest.mark.parametrize(("kind", "params"), BAD_PARAMS)
def test_bad_params_are_invalid_params_and_never_reach_bpy(
    client: AddonClient, kind: str, params: dict[str, Any]
) -> None:
    """Item 23: each of these once answered `internal` (or worse) from inside bpy."""
    before = data_blocks(client)
    reply = client.call(kind, params, id="bad")
    assert reply["status"] == "error" and reply["code"] == "invalid_params", reply
    assert data_blocks(client) == before  # nothing half made


def test_apply_state_reports_exactly_what_it_applied(client: AddonClient) -> None:
    """Item 23: an object that cannot be made is reported, and everything reported as
    created exists."""
    record = {"type": "MESH", "location": [0, 0, 0], "rotation": [0, 0, 0],
              "scale": [1, 1, 1], "data_kind": "cube"}  # fmt: skip
    snapshot = {
        "objects": [
            {**record, "name": "Made"},
            {**record, "name": "Foreign", "data_kind": None},  # geometry it did not make
            {**record, "name": "Child", "parent": "Made"},
        ],
        "prune": True,
    }
    result = client.ok("apply_state", snapshot)
    scene = {o["name"] for o in client.ok("get_state")["objects"]}
    assert set(result["created"]) == scene == {"Made", "Child"}
    assert [s["name"] for s in result["skipped"]] == ["Foreign"]


def test_what_the_addon_made_leaves_no_orphan_data(client: AddonClient) -> None:
    """Item 24: deleting objects, and pruning them with apply_state, removes the mesh
    and material the addon made for them (and nothing it did not make)."""
    before = data_blocks(client)
    for round_number in range(3):
        for n in range(30):
            name = f"Leak{n}"
            client.ok("create_object", {"kind": "monkey", "name": name})
            client.ok("set_material", {"object": name, "material": f"Mat{round_number}-{n}"})
            client.ok("create_object", {"kind": "light", "name": f"Lamp{n}"})
        for n in range(15):
            client.ok("delete_object", {"name": f"Leak{n}"})
            client.ok("delete_object", {"name": f"Lamp{n}"})
        client.ok("apply_state", {"objects": [], "prune": True})
    assert data_blocks(client) == before
