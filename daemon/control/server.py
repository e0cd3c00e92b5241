"""The control port: loopback TCP, NDJSON, token-checked (PROTOCOL.md §2).

One handler per client connection: a reader (this task) and a single writer task. A
`session.command` goes straight onto the one command path (`submit`): its reply is
queued when the link delivers the outcome, with no task of its own. Every other
request gets a task, so slow ops run concurrently.

The handler edge: every exception of a request becomes a wire error here and only
here (ProtocolError: its code; anything else: logged with its traceback, `internal`);
every request read gets exactly one reply; what escapes a connection ends that
connection only. Until a request shows the token, a connection may send lines of at
most PRE_AUTH_FRAME_BYTES and must do so within AUTH_DEADLINE_S.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import partial

import msgspec
import structlog
import trio

from ..events import encode_event
from ..protocol import (
    DECODE_ERRORS,
    NEED_DATA,
    BadMessage,
    ConnectionClosed,
    ControlServerConnection,
    ErrorCode,
    ProtocolError,
    RemoteProtocolError,
    RequestReceived,
)
from ..protocol.limits import AUTH_DEADLINE_S, PRE_AUTH_FRAME_BYTES
from ..protocol.messages import ControlRequest, RequestId
from ..protocol.ops import CommandParams, CommandResult, StatusResult
from ..sessions import SessionService
from .connection import ClientConnection
from .ops import STREAMING_OPS, OpContext, lookup

log = structlog.get_logger("control")

RECEIVE_CHUNK_BYTES = 64 * 1024
# Requests one client (by client_id) may have in flight before the excess is answered
# `busy` at once: deep enough for pipelining, a clear signal instead of a silent queue.
DEFAULT_MAX_IN_FLIGHT_PER_CLIENT = 128
# After a framing error, how long to keep reading (and dropping) what the client still
# sends, so closing does not reset the connection before it has read our reply.
LINGER_S = 1.0
_encoder = msgspec.json.Encoder()
_command_params_decoder = msgspec.json.Decoder(CommandParams)


class ControlServer:
    def __init__(
        self,
        service: SessionService,
        token: str,
        status: Callable[[], StatusResult] | None = None,
        *,
        max_in_flight_per_client: int = DEFAULT_MAX_IN_FLIGHT_PER_CLIENT,
        auth_deadline_s: float = AUTH_DEADLINE_S,
    ) -> None:
        self.service = service
        self.status = status or _no_status
        self.web_link: Callable[[], str | None] = lambda: None  # set once the web runs
        self.max_in_flight_per_client = max_in_flight_per_client
        self.auth_deadline_s = auth_deadline_s
        # client_id -> requests in flight, across all of that client's connections.
        self._in_flight: dict[str, int] = {}
        self._token = token.encode()
        self.connections: set[ClientConnection] = set()

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        client = ClientConnection(stream)
        self.connections.add(client)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.write_loop)
                # Each request task holds its own clone of the outbox; the writer ends
                # once the reader, every request task and every command's reply are done
                # with it, so requests in flight at EOF still get their replies.
                async with client.outbox:
                    await self._read_loop(client, nursery)
                    await client.commands_idle()
                for scope in client.watches:  # a watch streams until the client hangs up
                    scope.cancel()
            if client.lingering:
                await _lingering_close(stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; its in-flight requests were cancelled with it
        except* Exception as group:  # a bug: log it, drop this connection, serve the rest
            log.error("connection_failed", exc_info=group)
        finally:
            self.connections.discard(client)
            await trio.aclose_forcefully(stream)

    async def _read_loop(self, client: ClientConnection, nursery: trio.Nursery) -> None:
        """Read and dispatch requests. The journals' batch is held while what one read
        brought in is handled, and released around every await: the start lines of a
        burst of pipelined commands go into their journals in one write."""
        conn = client.conn
        auth_deadline = trio.current_time() + self.auth_deadline_s
        journals = self.service.journals
        with journals.held():
            while True:
                try:
                    event = conn.next_event()
                except RemoteProtocolError as error:  # framing lost: answer, then close
                    with journals.released():
                        await client.send(conn.send_error(None, _pre_auth(error, conn)))
                    client.lingering = True
                    return
                match event:
                    case RequestReceived(request=request):
                        if not client.try_take_room():
                            with journals.released():
                                await client.take_room()
                        if not self._authorized(request.token):
                            client.queue(conn.send_error(request.id, _unauthorized()))
                            continue
                        conn.authenticated()
                        self._dispatch(request, client, nursery)
                    case BadMessage(error=bad_request, request_id=request_id, token=token):
                        problem = bad_request if self._authorized(token) else _unauthorized()
                        with journals.released():
                            await client.send(conn.send_error(request_id, problem))
                    case ConnectionClosed():
                        return
                    case _:
                        assert event is NEED_DATA
                        with journals.released():
                            if conn.is_authenticated:
                                data = await client.stream.receive_some(RECEIVE_CHUNK_BYTES)
                            else:
                                with trio.move_on_at(auth_deadline) as waited:
                                    data = await client.stream.receive_some(RECEIVE_CHUNK_BYTES)
                                if waited.cancelled_caught:
                                    message = _too_slow(self.auth_deadline_s)
                                    await client.send(conn.send_error(None, message))
                                    return
                        conn.receive_data(data)
                        if not conn.is_authenticated and self._authorized(conn.leading_token()):
                            conn.authenticated()  # a long first line, token first

    def _dispatch(
        self, request: ControlRequest, client: ClientConnection, nursery: trio.Nursery
    ) -> None:
        """Start one authorized request. Its room is taken; it gets exactly one reply."""
        conn = client.conn
        client_key = request.client_id or client.key
        if not self._take_slot(client_key):
            client.queue(conn.send_error(request.id, self._busy(request)))
            return
        if request.op == "session.command":
            try:
                params = _command_params_decoder.decode(request.params)
            except DECODE_ERRORS:
                pass  # the op handler words the error
            else:
                self._submit_command(request, params, client, client_key)
                return
        # A watch's scope is known from the moment its request is read: if the client
        # hangs up before the task starts, cancelling it then still ends the stream.
        watch = trio.CancelScope() if request.op in STREAMING_OPS else None
        if watch is not None:
            client.watches.add(watch)
        nursery.start_soon(
            self._serve_request, request, client.outbox.clone(), client_key, client, watch
        )

    def _submit_command(
        self,
        request: ControlRequest,
        params: CommandParams,
        client: ClientConnection,
        client_key: str,
    ) -> None:
        def reply(answer: CommandResult | ProtocolError) -> None:
            try:
                self._release_slot(client_key)
            finally:
                if isinstance(answer, ProtocolError):
                    client.command_answered(ControlServerConnection.send_error(request.id, answer))
                else:
                    result = _encoder.encode(answer)
                    client.command_answered(ControlServerConnection.send_result(request.id, result))

        client.command_sent()
        self.service.submit_command(
            params.session_id, params.type, params.params, request.client_id, reply
        )

    def _take_slot(self, key: str) -> bool:
        count = self._in_flight.get(key, 0)
        if count >= self.max_in_flight_per_client:
            return False
        self._in_flight[key] = count + 1
        return True

    def _release_slot(self, key: str) -> None:
        count = self._in_flight.get(key, 0) - 1
        if count <= 0:
            self._in_flight.pop(key, None)
        else:
            self._in_flight[key] = count

    def _busy(self, request: ControlRequest) -> RemoteProtocolError:
        who = f"client {request.client_id}" if request.client_id else "this connection"
        return RemoteProtocolError(
            ErrorCode.BUSY,
            f"{who} already has {self.max_in_flight_per_client} requests in flight; "
            "wait for replies before sending more",
        )

    def _authorized(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(
            token.encode("utf-8", "replace"), self._token
        )

    async def _serve_request(
        self,
        request: ControlRequest,
        outbox: trio.MemorySendChannel[bytes],
        client_key: str,
        client: ClientConnection,
        watch: trio.CancelScope | None,
    ) -> None:
        """The handler edge: every exception becomes a wire error here, and only here."""
        try:
            async with outbox:
                await self._serve_request_to(request, outbox, client, watch)
        finally:
            self._release_slot(client_key)

    async def _serve_request_to(
        self,
        request: ControlRequest,
        outbox: trio.MemorySendChannel[bytes],
        client: ClientConnection,
        watch: trio.CancelScope | None,
    ) -> None:
        with structlog.contextvars.bound_contextvars(client_id=request.client_id, op=request.op):
            if watch is not None:
                with watch:
                    try:
                        await self._watch(request.id, outbox, client)
                    finally:
                        client.watches.discard(watch)
                return
            try:
                handler = lookup(request.op)
                context = OpContext(self.service, self.status, request.client_id, self.web_link)
                result = await handler(context, request.params)
                reply = ControlServerConnection.send_result(request.id, result)
            except ProtocolError as error:
                reply = ControlServerConnection.send_error(request.id, error)
            except Exception as error:  # a bug: log it, answer `internal`, keep serving
                log.exception("op_failed", error=repr(error))
                reply = ControlServerConnection.send_error(
                    request.id,
                    RemoteProtocolError(
                        ErrorCode.INTERNAL, f"internal error in {request.op!r}: {error!r}"
                    ),
                )
            outbox.send_nowait(reply)  # its room was taken when the request was read

    async def _watch(
        self,
        request_id: RequestId | None,
        outbox: trio.MemorySendChannel[bytes],
        client: ClientConnection,
    ) -> None:
        """Stream events until the client hangs up (which cancels this task)."""
        send = partial(ControlServerConnection.send_event, request_id)
        with self.service.events.subscribe() as events:
            # The watch request's room carries the first message; each event after it
            # waits for room, so a watcher that stops reading falls behind (and the
            # broadcaster tells it how many events it missed).
            outbox.send_nowait(send(*encode_event(self.status())))
            async for event, data in events:
                await client.take_room()
                outbox.send_nowait(send(event, data))


async def _lingering_close(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(LINGER_S):
        if isinstance(stream, trio.SocketStream):
            await stream.send_eof()
        while await stream.receive_some(RECEIVE_CHUNK_BYTES):
            pass


def _unauthorized() -> RemoteProtocolError:
    return RemoteProtocolError(ErrorCode.UNAUTHORIZED, "unauthorized")


def _pre_auth(error: RemoteProtocolError, conn: ControlServerConnection) -> RemoteProtocolError:
    """Before the token, lines are small: say how to get past that."""
    if conn.is_authenticated:
        return error
    return RemoteProtocolError(
        error.code,
        f"{error.message}; until a request has shown the token, lines are limited to "
        f'{PRE_AUTH_FRAME_BYTES} bytes: put "token" first in the line, or send a small '
        "request first (like status)",
        framing_lost=error.framing_lost,
    )


def _too_slow(deadline_s: float) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.UNAUTHORIZED,
        f"unauthorized: no request with the token within {deadline_s:g} s; closing",
    )


def refusal_line(max_connections: int) -> bytes:
    """What a connection over the cap reads before it is closed."""
    return ControlServerConnection.send_error(
        None,
        RemoteProtocolError(
            ErrorCode.BUSY,
            f"the daemon has {max_connections} control connections open (its limit, "
            "--max-connections); close some and retry",
        ),
    )


def _no_status() -> StatusResult:
    raise RemoteProtocolError(ErrorCode.INTERNAL, "this control server has no daemon status")
