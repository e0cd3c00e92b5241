"""A stand-in for the Blender addon, for fast protocol tests of the daemon only.

It speaks the addon link (NDJSON) over any trio stream: in memory (with the daemon's
`connect=` hook, under autojump_clock) or on a loopback port. The addon itself is
tested inside real Blender (test_addon_*.py); this never replaces those tests.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

import trio
import trio.testing


@dataclass
class FakeAddon:
    answer_pings: bool = True
    refuse: bool = False  # close every new connection at once, as if Blender were gone
    busy: bool = False
    command_delay_s: float = 0.0
    blender_version: str = "5.0.1"
    objects: dict[str, dict] = field(default_factory=dict)
    received: list[dict] = field(default_factory=list)
    connections: int = 0
    session_id: str | None = None
    streams: list[trio.abc.Stream] = field(default_factory=list)
    instance_id: str = "fake-instance-1"
    port: int = 0  # set when it serves on a loopback port
    # Frozen, like a SIGSTOPped Blender: nothing is answered until `thaw()`, then
    # everything that came meanwhile is (the kernel kept it in the socket buffers).
    frozen: bool = False
    # Replace the result of a request type with raw JSON (a hostile or broken addon).
    raw_results: dict[str, bytes] = field(default_factory=dict)
    # Request types whose next one is never answered (lost by a broken peer).
    drop_next: set[str] = field(default_factory=set)
    _thawed: trio.Event = field(default_factory=trio.Event)

    def freeze(self) -> None:
        self.frozen = True
        self._thawed = trio.Event()

    def thaw(self) -> None:
        self.frozen = False
        self._thawed.set()

    async def inject(self, data: bytes) -> None:
        """Send raw bytes to every connected daemon, as a broken addon would."""
        for stream in list(self.streams):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(data)

    async def connect(self, host: str, port: int, *, nursery: trio.Nursery) -> trio.abc.Stream:
        """A `connect=` hook for AddonLink: a fresh in-memory connection to this fake."""
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(self.handle, server)
        return client

    async def serve_tcp(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self.handle, listeners)

    async def drop_connections(self) -> None:
        for stream in self.streams:
            await trio.aclose_forcefully(stream)
        self.streams.clear()

    async def handle(self, stream: trio.abc.Stream) -> None:
        if self.refuse:
            await trio.aclose_forcefully(stream)
            return
        self.connections += 1
        self.streams.append(stream)
        buffer = b""
        send_lock = trio.Lock()  # one writer at a time, like the real addon's writer thread
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        request = json.loads(line)
                        self.received.append(request)
                        nursery.start_soon(self._answer, stream, send_lock, request)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the daemon side went away

    async def _answer(self, stream: trio.abc.Stream, send_lock: trio.Lock, request: dict) -> None:
        kind, params = request["type"], request.get("params", {})
        if self.frozen:
            await self._thawed.wait()
        if kind == "ping" and not self.answer_pings:
            return
        if kind in self.drop_next:
            self.drop_next.discard(kind)
            return
        if kind not in ("hello", "ping", "attach_session", "subscribe") and self.command_delay_s:
            await trio.sleep(self.command_delay_s)
        if kind in self.raw_results:
            data = b'{"id": %s, "status": "success", "result": %s}\n' % (
                json.dumps(request.get("id")).encode(),
                self.raw_results[kind],
            )
        else:
            try:
                reply = {"status": "success", "result": self._result(kind, params)}
            except KeyError as missing:
                reply = {"status": "error", "code": "not_found", "message": f"no object {missing}"}
            reply["id"] = request.get("id")
            data = json.dumps(reply).encode() + b"\n"
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with send_lock:
                await stream.send_all(data)

    def _record(self, name: str) -> dict:
        obj = self.objects[name]
        return {
            "name": name,
            "type": obj["type"],
            "location": obj["location"],
            "rotation": [0.0, 0.0, 0.0],
            "scale": [1.0, 1.0, 1.0],
            "parent": None,
            "materials": [],
            "visible": True,
            "data_kind": obj["kind"],
        }

    def _state(self) -> dict:
        return {
            "scene": "Scene",
            "frame": 1,
            "file": "",
            "objects": [self._record(n) for n in self.objects],
            "selection": [],
            "active": None,
        }

    def _result(self, kind: str, params: dict) -> object:
        match kind:
            case "hello":
                return {
                    "protocol": 1,
                    "addon_version": "fake",
                    "blender_version": self.blender_version,
                    "file": "",
                    "scene": "Scene",
                    "commands": [
                        "get_state",
                        "create_object",
                        "delete_object",
                        "get_scene_info",
                        "apply_state",
                    ],
                    "session_id": self.session_id,
                    "instance_id": self.instance_id,
                }
            case "ping":
                return {
                    "pong": True,
                    "session_id": self.session_id,
                    "main_thread": {
                        "busy": self.busy,
                        "busy_for_ms": 3000.0 if self.busy else 0.0,
                        "queue_depth": 1 if self.busy else 0,
                    },
                }
            case "attach_session":
                self.session_id = params.get("session_id")
                return {}
            case "subscribe":
                return {}
            case "create_object":
                name = params.get("name") or params["kind"].title()
                self.objects[name] = {
                    "type": "MESH",
                    "kind": params["kind"],
                    "location": params.get("location", [0.0, 0.0, 0.0]),
                }
                return self._record(name)
            case "delete_object":
                del self.objects[params["name"]]
                return {"deleted": params["name"]}
            case "get_state":
                return self._state()
            case "get_scene_info":
                return {
                    "name": "Scene",
                    "object_count": len(self.objects),
                    "objects": [
                        {"name": n, "type": o["type"], "location": o["location"]}
                        for n, o in self.objects.items()
                    ],
                    "materials_count": 0,
                }
            case "transform_object":
                self.objects[params["name"]]["location"] = params.get(
                    "location", self.objects[params["name"]]["location"]
                )
                return self._record(params["name"])
            case "apply_state":
                created = [
                    o["name"] for o in params.get("objects", []) if o["name"] not in self.objects
                ]
                for o in params.get("objects", []):
                    self.objects[o["name"]] = {
                        "type": o["type"],
                        "kind": o["data_kind"],
                        "location": o["location"],
                    }
                return {"created": created, "updated": [], "removed": [], "skipped": []}
        return {}
