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

from blender_addon import blender_mcp
from blender_addon.framing import FrameDecoder, FrameError

from ..protocol import DECODE_ERRORS, ErrorCode, ProtocolError, RemoteProtocolError
from ..protocol.commands import COMMANDS
from ..protocol.limits import MAX_FRAME_BYTES
from ..protocol.messages import EMPTY_OBJECT, LinkFailure, LinkSuccess, RequestId
from ..protocol.ops import CommandResult
from ..sessions import SessionService
from .peers import Address, PeerNames

log = structlog.get_logger("proxy")
RECEIVE_CHUNK_BYTES = 256 * 1024
# Requests of one connection waiting for their answer before the proxy stops reading
# from it (as the addon does), so a client that floods without reading costs bounded
# memory.
MAX_IN_FLIGHT_PER_CONNECTION = 1024
MAX_REPLIES_PER_WRITE = 256
_encoder = msgspec.json.Encoder()


class ProxyRequest(msgspec.Struct, frozen=True):
    type: str
    params: msgspec.Raw = EMPTY_OBJECT  # `null` is taken as {} too, as the addon does
    id: RequestId | None = None


class _IdOnly(msgspec.Struct):
    id: RequestId | None = None


_request_decoder = msgspec.json.Decoder(ProxyRequest)
_id_decoder = msgspec.json.Decoder(_IdOnly)
# Answered by the proxy itself, never sent to Blender (blender_mcp.py says how): they
# are about the addon, not the scene. Recorded tagged as housekeeping when a session
# is open; alone they never open one.
HOUSEKEEPING = frozenset({*blender_mcp.PROBES, "ping"})
_PONG = b'{"pong":true}'
EXECUTE_CODE_OFF = (
    "execute_code is off through the proxy: it lets any local process run Python in "
    "Blender; to turn it on, start the daemon with --allow-execute-code and Blender with "
    "blender-session blender --allow-execute-code"
)


class ProxyServer:
    def __init__(self, service: SessionService, allow_execute_code: bool = False) -> None:
        self.service = service
        self.allow_execute_code = allow_execute_code
        self.peers = PeerNames()

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        """Requests go down the command path as they are read (a pipelining client's
        are pipelined to Blender) and are answered in the order they came, each once
        the session has recorded it. At most MAX_IN_FLIGHT_PER_CONNECTION wait for
        their answer; past that the proxy stops reading from the client."""
        decoder = FrameDecoder(MAX_FRAME_BYTES)
        sending, answering = trio.open_memory_channel[_Reply](MAX_IN_FLIGHT_PER_CONNECTION)
        try:
            client_id = await self.peers.client_id(*_addresses(stream))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_replies, stream, decoder, answering)
                async with sending:
                    await self._read_requests(stream, decoder, client_id, sending)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # a bug: log it, drop this connection, serve the rest
            log.exception("proxy_connection_failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _read_requests(
        self,
        stream: trio.abc.Stream,
        decoder: FrameDecoder,
        client_id: str,
        replies: trio.MemorySendChannel[_Reply],
    ) -> None:
        """The journals' batch is held while what one read brought in is handled, and
        released around every await (see store/journal.py): the start lines of a burst
        of pipelined commands go into the journal in one write."""
        journals = self.service.journals
        with journals.held():
            while True:
                with journals.released():
                    data = await stream.receive_some(RECEIVE_CHUNK_BYTES)
                if not data:
                    return
                decoder.feed(data)
                while True:
                    try:
                        body = decoder.next_body()
                    except FrameError as lost:  # answered after the others, then closed
                        with journals.released():
                            await replies.send(_Reply.ready(_error(lost.code, lost.message)))
                        return
                    if body is None:
                        break
                    reply = await self._start(body, client_id)
                    try:
                        replies.send_nowait(reply)
                    except trio.WouldBlock:
                        with journals.released():
                            await replies.send(reply)

    async def _start(self, body: bytes | FrameError, client_id: str) -> _Reply:
        """Answer a request now, or send it down the command path; the reply to come."""
        request = _parse(body)
        if isinstance(request, bytes):
            return _Reply.ready(request)
        try:
            kind, params = self._scene_command(request, client_id)
            if kind is None:
                return _Reply.ready(
                    _encoder.encode(LinkSuccess(result=msgspec.Raw(params), id=request.id))
                )
            session = self.service.registry.newest()
            if session is None:
                with self.service.journals.released():
                    session = await self.service.bound_session()
        except ProtocolError as error:
            return _Reply.ready(_error(error.code.value, error.message, request.id))
        except Exception as error:  # a bug: answer `internal`, keep serving
            log.exception("proxy_request_failed", type=request.type)
            return _Reply.ready(_internal(request, error))
        pending = _Reply()

        def answer(outcome: CommandResult | ProtocolError) -> None:
            if isinstance(outcome, ProtocolError):
                pending.set(_error(outcome.code.value, outcome.message, request.id))
            else:
                result = msgspec.Raw(outcome.result)
                pending.set(_encoder.encode(LinkSuccess(result=result, id=request.id)))

        self.service.commands.submit(session, kind, msgspec.Raw(params), client_id, answer)
        return pending

    def _scene_command(self, request: ProxyRequest, client_id: str) -> tuple[str | None, bytes]:
        """(type, params) of a scene command for Blender, or (None, result) of a request
        the proxy answers itself. Raises ProtocolError."""
        kind = request.type
        params = EMPTY_OBJECT if bytes(request.params) == b"null" else request.params
        link = self.service.blenders.default
        if not link.connected:  # so a client never takes a proxy without Blender for one
            raise link.unavailable_error()
        if kind in HOUSEKEEPING:
            if kind == "ping":
                result = _PONG
            else:
                answer = blender_mcp.answer_probe(kind, link.info().blender_version)
                result = _encoder.encode(answer)
            session = self.service.registry.newest()
            if session is not None:  # probes alone never open a session
                self.service.record_housekeeping(session, kind, params, result, client_id)
            return None, result
        if kind not in COMMANDS and kind not in link.addon_commands:
            raise RemoteProtocolError(ErrorCode.UNKNOWN_COMMAND, blender_mcp.unknown_command(kind))
        if kind == "execute_code" and not self.allow_execute_code:
            raise RemoteProtocolError(ErrorCode.FORBIDDEN, EXECUTE_CODE_OFF)
        return kind, bytes(params)


class _Reply:
    """One request's reply, in the connection's order: ready now or set later."""

    __slots__ = ("body", "done")

    def __init__(self) -> None:
        self.body = b""
        self.done = trio.Event()

    @classmethod
    def ready(cls, body: bytes) -> _Reply:
        reply = cls()
        reply.set(body)
        return reply

    def set(self, body: bytes) -> None:
        self.body = body
        self.done.set()


async def _write_replies(
    stream: trio.abc.Stream, decoder: FrameDecoder, replies: trio.MemoryReceiveChannel[_Reply]
) -> None:
    """Send the replies in order, each as soon as it and those before it are in: what is
    ready together goes in one write, never held back for a later one."""
    async with replies:
        waiting: _Reply | None = None
        while True:
            if waiting is None:
                try:
                    waiting = await replies.receive()
                except trio.EndOfChannel:
                    return
            await waiting.done.wait()
            out, waiting = [decoder.frame(waiting.body)], None
            while len(out) < MAX_REPLIES_PER_WRITE:
                try:
                    following = replies.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                if not following.done.is_set():
                    waiting = following
                    break
                out.append(decoder.frame(following.body))
            await stream.send_all(b"".join(out))


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


def _parse(body: bytes | FrameError) -> ProxyRequest | bytes:
    """The request in a frame, or the error reply to it."""
    if isinstance(body, FrameError):
        return _error(body.code, body.message, body.request_id)
    try:
        return _request_decoder.decode(body)
    except DECODE_ERRORS as error:
        return _error(
            "bad_request",
            f'a request needs a "type" string and a "params" object ({error})',
            _readable_id(body),
        )


def _internal(request: ProxyRequest, error: Exception) -> bytes:
    return _error("internal", f"internal error in {request.type!r}: {error!r}", request.id)


def _addresses(stream: trio.abc.Stream) -> tuple[Address | None, Address | None]:
    """(peer, local) of a TCP connection; (None, None) for any other stream."""
    sock = getattr(stream, "socket", None)
    try:
        peer, local = sock.getpeername(), sock.getsockname()  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return None, None
    return (str(peer[0]), int(peer[1])), (str(local[0]), int(local[1]))


def _readable_id(body: bytes) -> RequestId | None:
    try:
        return _id_decoder.decode(body).id
    except DECODE_ERRORS:
        return None
