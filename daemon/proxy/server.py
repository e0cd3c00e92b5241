"""The recording proxy (`blender-sessiond --proxy-port N`).

It speaks the addon port's framings (NDJSON, bare JSON, length-prefixed: detected per
connection by the addon's own sans-I/O decoder) and `{type, params}` requests, so a
client written for an addon, such as the blender-mcp MCP server with BLENDER_PORT set
to this port, keeps working unchanged while every command it sends is recorded in the
session bound to this daemon's Blender. Replies keep blender-mcp's shape.

A request's params are decoded by msgspec from the bytes the client sent and go on to
the command path as those bytes: nothing a client sends is re-encoded. Every failure
of a request becomes an error reply here; every failure of a connection ends that
connection only.
"""

from __future__ import annotations

import msgspec
import structlog
import trio
from ulid import ULID

from blender_addon.framing import FrameDecoder, FrameError

from ..protocol import DECODE_ERRORS, ErrorCode, ProtocolError, RemoteProtocolError
from ..protocol.commands import COMMANDS
from ..protocol.limits import MAX_FRAME_BYTES
from ..protocol.messages import EMPTY_OBJECT, LinkFailure, LinkSuccess, RequestId
from ..sessions import SessionService

log = structlog.get_logger("proxy")
RECEIVE_CHUNK_BYTES = 256 * 1024
_encoder = msgspec.json.Encoder()


class ProxyRequest(msgspec.Struct, frozen=True):
    type: str
    params: msgspec.Raw = EMPTY_OBJECT  # `null` is taken as {} too, as the addon does
    id: RequestId | None = None


class _IdOnly(msgspec.Struct):
    id: RequestId | None = None


class IntegrationStatus(msgspec.Struct, frozen=True):
    enabled: bool
    message: str


class TelemetryConsent(msgspec.Struct, frozen=True):
    consent: bool


_request_decoder = msgspec.json.Decoder(ProxyRequest)
_id_decoder = msgspec.json.Decoder(_IdOnly)


def _disabled(integration: str) -> IntegrationStatus:
    return IntegrationStatus(
        enabled=False, message=f"{integration} is not available through blender-scene-sessions"
    )


# Probes blender-mcp's server sends to learn which integrations are on. The proxy
# answers them itself (they are about Blender's addon, not the scene), and records
# them tagged as housekeeping when a session is open.
HOUSEKEEPING_ANSWERS: dict[str, msgspec.Struct] = {
    "get_polyhaven_status": _disabled("PolyHaven"),
    "get_hyper3d_status": _disabled("Hyper3D Rodin"),
    "get_sketchfab_status": _disabled("Sketchfab"),
    "get_hunyuan3d_status": _disabled("Hunyuan3D"),
    "get_telemetry_consent": TelemetryConsent(consent=False),
}


class ProxyServer:
    def __init__(self, service: SessionService) -> None:
        self.service = service

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        """One request at a time per connection, answered in order, as addon clients
        expect; the session records each before it is answered."""
        decoder = FrameDecoder(MAX_FRAME_BYTES)
        client_id = f"proxy-{ULID()}"
        try:
            while data := await stream.receive_some(RECEIVE_CHUNK_BYTES):
                decoder.feed(data)
                while True:
                    try:
                        body = decoder.next_body()
                    except FrameError as lost:
                        await stream.send_all(decoder.frame(_error(lost.code, lost.message)))
                        return
                    if body is None:
                        break
                    await stream.send_all(decoder.frame(await self._answer(body, client_id)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # a bug: log it, drop this connection, serve the rest
            log.exception("proxy_connection_failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(self, body: bytes | FrameError, client_id: str) -> bytes:
        if isinstance(body, FrameError):
            return _error(body.code, body.message, body.request_id)
        try:
            request = _request_decoder.decode(body)
        except DECODE_ERRORS as error:
            return _error(
                "bad_request",
                f'a request needs a "type" string and a "params" object ({error})',
                _readable_id(body),
            )
        try:
            result = await self._dispatch(request, client_id)
        except ProtocolError as error:
            return _error(error.code.value, error.message, request.id)
        except Exception as error:  # a bug: answer `internal`, keep serving
            log.exception("proxy_request_failed", type=request.type)
            return _error("internal", f"internal error in {request.type!r}: {error!r}", request.id)
        return _encoder.encode(LinkSuccess(result=msgspec.Raw(result), id=request.id))

    async def _dispatch(self, request: ProxyRequest, client_id: str) -> bytes:
        kind = request.type
        params = EMPTY_OBJECT if bytes(request.params) == b"null" else request.params
        answer = HOUSEKEEPING_ANSWERS.get(kind)
        if answer is not None:
            result = _encoder.encode(answer)
            session = self.service.registry.newest()
            if session is not None:  # probes alone never open a session
                self.service.record_housekeeping(session, kind, params, result, client_id)
            return result
        link = self.service.blenders.default
        if kind not in COMMANDS and kind not in link.addon_commands:
            raise RemoteProtocolError(
                ErrorCode.UNKNOWN_COMMAND,
                f"Unknown command type: {kind} (not available through blender-scene-sessions; "
                "it records the scene commands of its own addon)",
            )
        session = await self.service.bound_session()
        done = await self.service.commands.run(session, kind, params, client_id)
        return bytes(done.result)


def refusal_line(max_connections: int) -> bytes:
    """What a connection over the cap reads before it is closed (NDJSON framing)."""
    message = (
        f"the daemon's proxy has {max_connections} connections open (its limit, "
        "--max-proxy-connections); close some and retry"
    )
    return _error("busy", message) + b"\n"


def _error(code: str, message: str, request_id: object = None) -> bytes:
    reply_id = request_id if isinstance(request_id, int | str) else None
    return _encoder.encode(LinkFailure(code=code, message=message, id=reply_id))


def _readable_id(body: bytes) -> RequestId | None:
    try:
        return _id_decoder.decode(body).id
    except DECODE_ERRORS:
        return None
