"""The baseline for the GUI benchmark, run inside Blender with `--python`: the
execution model of the blender-mcp addon. A thread per connection reads one request,
registers a one-shot `bpy.app.timers` timer that runs it on the main thread and sends
the answer from there, and waits for that before reading the next request: one
command per timer tick, one request at a time per connection, no pipelining.

Requests and answers are NDJSON (so the benchmark's client drives both servers the
same way); the command is the same trivial scene read as the addon's
`get_scene_info`. Prints `ONE_SHOT_TIMER_SERVER <port>` once listening.
"""

import json
import socket
import threading
from typing import Any

import bpy


def scene_info() -> dict[str, Any]:
    scene = bpy.context.scene
    return {
        "name": scene.name,
        "object_count": len(scene.objects),
        "objects": [
            {"name": obj.name, "type": obj.type, "location": list(obj.location)}
            for obj in scene.objects
        ],
    }


def serve_client(conn: socket.socket) -> None:
    reader = conn.makefile("rb")
    for line in reader:
        request = json.loads(line)
        answered = threading.Event()

        def run_once(
            request: dict[str, Any] = request, answered: threading.Event = answered
        ) -> None:
            result = scene_info()
            reply = {"id": request.get("id"), "status": "success", "result": result}
            conn.sendall(json.dumps(reply).encode() + b"\n")
            answered.set()
            return None  # one-shot: the timer is not called again

        bpy.app.timers.register(run_once, first_interval=0.0)
        answered.wait()
    conn.close()


def accept_forever(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve_client, args=(conn,), daemon=True).start()


listener = socket.create_server(("127.0.0.1", 0))
print(f"ONE_SHOT_TIMER_SERVER {listener.getsockname()[1]}", flush=True)
threading.Thread(target=accept_forever, args=(listener,), daemon=True).start()
