"""The recording proxy (`blender-sessiond --proxy-port N`).

It speaks the addon port's framings (NDJSON, bare JSON, length-prefixed: detected per
connection by the addon's own sans-I/O decoder) and `{type, params}` requests, so a
client written for an addon, such as the blender-mcp MCP server with BLENDER_PORT set
to this port, can keep working unchanged while every command it sends is recorded in
the session bound to this daemon's Blender. Replies keep blender-mcp's shape.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
import trio
from ulid import ULID

from blender_addon.framing import FrameDecoder, FrameError

from ..protocol import ProtocolError
from ..protocol.messages import COMMAND_PARAMS
from ..sessions import SessionManager

log = structlog.get_logger("proxy")
RECEIVE_CHUNK_BYTES = 256 * 1024
_encoder = msgspec.json.Encoder()

# Probes blender-mcp's server sends to learn which integrations are on. The proxy
# answers them itself (they are about Blender's addon, not the scene), and records
# them tagged as housekeeping.
HOUSEKEEPING_ANSWERS: dict[str, dict[str, Any]] = {
    "get_polyhaven_status": {
        "enabled": False,
        "message": "PolyHaven is not available through blender-scene-sessions",
    },
    "get_hyper3d_status": {
        "enabled": False,
        "message": "Hyper3D Rodin is not available through blender-scene-sessions",
    },
    "get_sketchfab_status": {
        "enabled": False,
        "message": "Sketchfab is not available through blender-scene-sessions",
    },
    "get_hunyuan3d_status": {
        "enabled": False,
        "message": "Hunyuan3D is not available through blender-scene-sessions",
    },
    "get_telemetry_consent": {"consent": False},
}


class ProxyServer:
    def __init__(self, manager: SessionManager, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.manager = manager
        self.host = host
        self.port = port

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        port = int(listeners[0].socket.getsockname()[1])
        log.info("proxy_listening", host=self.host, port=port)
        task_status.started(port)
        await trio.serve_listeners(self.handle_connection, listeners)

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        """One request at a time per connection, answered in order, as addon clients
        expect; the session records each before it is answered."""
        decoder = FrameDecoder()
        client_id = f"proxy-{ULID()}"
        try:
            while data := await stream.receive_some(RECEIVE_CHUNK_BYTES):
                decoder.feed(data)
                while True:
                    try:
                        frame = decoder.next_frame()
                    except FrameError as lost:
                        await stream.send_all(decoder.encode(_error(lost.code, lost.message)))
                        return
                    if frame is None:
                        break
                    await stream.send_all(decoder.encode(await self._answer(frame, client_id)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, frame: object, client_id: str) -> dict[str, Any]:
        if isinstance(frame, FrameError):
            return _error(frame.code, frame.message)
        assert isinstance(frame, dict)
        reply = await self._dispatch(frame, client_id)
        if "id" in frame:
            reply = {"id": frame["id"], **reply}
        return reply

    async def _dispatch(self, request: dict[str, Any], client_id: str) -> dict[str, Any]:
        kind = request.get("type")
        params = request.get("params") or {}
        if not isinstance(kind, str) or not isinstance(params, dict):
            return _error("bad_request", 'a request needs a "type" string and "params" object')
        raw_params = msgspec.Raw(_encoder.encode(params))
        try:
            session_id = await self.manager.bound_session_id()
            if kind in HOUSEKEEPING_ANSWERS:
                result = HOUSEKEEPING_ANSWERS[kind]
                await self.manager.record_housekeeping(
                    session_id, kind, raw_params, _encoder.encode(result), client_id
                )
                return {"status": "success", "result": result}
            if kind not in COMMAND_PARAMS and kind not in self.manager.link.snapshot.commands:
                return _error(
                    "unknown_command",
                    f"Unknown command type: {kind} (not available "
                    "through blender-scene-sessions; it records the scene commands "
                    "of its own addon)",
                )
            done = await self.manager.command(session_id, kind, raw_params, client_id)
        except ProtocolError as error:
            return _error(error.code.value, error.message)
        return {"status": "success", "result": msgspec.json.decode(done.result)}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"status": "error", "code": code, "message": message}
