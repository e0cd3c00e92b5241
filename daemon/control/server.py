"""The control port: loopback TCP, NDJSON, token-checked (PROTOCOL.md §2).

One handler per client connection, with a reader (this task) and a single writer
task. A `session.command` for an open session takes the fast path: the reader
journals it and hands it to the link, and the link's reader queues the reply, with no
task of its own (`SessionManager.command_now`). Every other request gets a task, so
slow ops run concurrently. Each message to a client holds a unit of the connection's
`room` until it is written, so a client that stops reading stalls only itself, with
bounded memory.
"""

from __future__ import annotations

import contextlib
import hmac
import math
from functools import partial

import msgspec
import structlog
import trio

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
from ..protocol.messages import ControlRequest, RequestId
from ..protocol.ops import CommandParams, CommandResult
from ..sessions import SessionManager
from ..store import is_session_id
from .ops import STREAMING_OPS, OpContext, lookup

log = structlog.get_logger("control")

# Requests in flight plus replies not yet written, per connection, before the server
# stops reading from it: enough for deep pipelining, bounded memory for a flood.
MAX_UNWRITTEN_PER_CONNECTION = 256
RECEIVE_CHUNK_BYTES = 64 * 1024
# Requests one client (by client_id) may have in flight before the excess is answered
# `busy` at once: deep enough for pipelining, a clear signal instead of a silent queue.
DEFAULT_MAX_IN_FLIGHT_PER_CLIENT = 128
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_encoder = msgspec.json.Encoder()
_command_params_decoder = msgspec.json.Decoder(CommandParams)


class ControlServer:
    def __init__(
        self,
        manager: SessionManager,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 9877,
        max_in_flight_per_client: int = DEFAULT_MAX_IN_FLIGHT_PER_CLIENT,
    ) -> None:
        self.max_in_flight_per_client = max_in_flight_per_client
        # client_id -> requests in flight, across all of that client's connections.
        self._in_flight: dict[str, int] = {}
        if host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"control host {host!r} is not loopback; the control port only listens on "
                "127.0.0.1 or ::1"
            )
        self.manager = manager
        self.host = host
        self.port = port
        self._token = token.encode()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve; `started()` reports the bound port (useful with port 0)."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        port = int(listeners[0].socket.getsockname()[1])
        log.info("control_listening", host=self.host, port=port)
        task_status.started(port)
        await trio.serve_listeners(self.handle_connection, listeners)

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        client = _Client(stream)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.write_loop)
                # Each request task holds its own clone of the outbox; the writer ends
                # once the reader, every request task and every fast-path reply are done
                # with it, so requests in flight at EOF still get their replies.
                async with client.outbox:
                    await self._read_loop(client, nursery)
                    await client.fast_idle()
                for scope in client.watches:  # a watch streams until the client hangs up
                    scope.cancel()
            if client.lingering:
                await _lingering_close(stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; its in-flight requests were cancelled with it
        except* Exception as group:  # a bug: log it, drop this connection, serve the rest
            log.error("connection_failed", exc_info=group)
        finally:
            await trio.aclose_forcefully(stream)

    async def _read_loop(self, client: _Client, nursery: trio.Nursery) -> None:
        conn = client.conn
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as error:  # framing lost: answer, then close
                await client.send(conn.send_error(None, error))
                client.lingering = True
                return
            match event:
                case RequestReceived(request=request):
                    await client.take_room()
                    if not self._authorized(request.token):
                        client.queue(conn.send_error(request.id, _unauthorized()))
                        continue
                    client_key = request.client_id or f"connection-{id(conn)}"
                    if not self._take_slot(client_key):
                        client.queue(conn.send_error(request.id, self._busy(request)))
                        continue
                    if request.op == "session.command" and self._command_now(
                        request, client, client_key
                    ):
                        continue
                    nursery.start_soon(
                        self._serve_request, request, client.outbox.clone(), client_key, client
                    )
                case BadMessage(error=bad_request, request_id=request_id, token=token):
                    problem = bad_request if self._authorized(token) else _unauthorized()
                    await client.send(conn.send_error(request_id, problem))
                case ConnectionClosed():
                    return
                case _:
                    assert event is NEED_DATA
                    data = await client.stream.receive_some(RECEIVE_CHUNK_BYTES)
                    conn.receive_data(data)

    def _command_now(self, request: ControlRequest, client: _Client, client_key: str) -> bool:
        """Run a scene command on the fast path if it can take it; False otherwise."""
        try:
            params = _command_params_decoder.decode(request.params)
        except DECODE_ERRORS:
            return False  # the op handler words the error
        if not is_session_id(params.session_id):
            return False

        def reply(outcome: CommandResult | RemoteProtocolError) -> None:
            self._release_slot(client_key)
            if isinstance(outcome, RemoteProtocolError):
                client.deliver(ControlServerConnection.send_error(request.id, outcome))
            else:
                result = _encoder.encode(outcome)
                client.deliver(ControlServerConnection.send_result(request.id, result))

        client.fast_in_flight += 1
        try:
            taken = self.manager.command_now(
                params.session_id, params.type, params.params, request.client_id, reply
            )
        except RemoteProtocolError as error:
            reply(error)
            return True
        if not taken:
            client.fast_in_flight -= 1
        return taken

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
        return token is not None and hmac.compare_digest(token.encode(), self._token)

    async def _serve_request(
        self,
        request: ControlRequest,
        outbox: trio.MemorySendChannel[bytes],
        client_key: str,
        client: _Client,
    ) -> None:
        """The handler edge: every exception becomes a wire error here, and only here."""
        try:
            async with outbox:
                await self._serve_request_to(request, outbox, client)
        finally:
            self._release_slot(client_key)

    async def _serve_request_to(
        self,
        request: ControlRequest,
        outbox: trio.MemorySendChannel[bytes],
        client: _Client,
    ) -> None:
        with structlog.contextvars.bound_contextvars(client_id=request.client_id, op=request.op):
            if request.op in STREAMING_OPS:
                with trio.CancelScope() as scope:
                    client.watches.add(scope)
                    try:
                        await self._watch(request.id, outbox, client)
                    finally:
                        client.watches.discard(scope)
                return
            try:
                handler = lookup(request.op)
                result = await handler(OpContext(self.manager, request.client_id), request.params)
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
        self, request_id: RequestId | None, outbox: trio.MemorySendChannel[bytes], client: _Client
    ) -> None:
        """Stream events until the client hangs up (which cancels this task)."""
        encode = partial(ControlServerConnection.send_event, request_id)
        with self.manager.events.subscribe() as events:
            # The watch request's room carries the first message; each event after it
            # waits for room, so a watcher that stops reading falls behind (and the
            # broadcaster tells it how many events it missed).
            outbox.send_nowait(encode("watching", msgspec.json.encode(self.manager.status())))
            async for event, data in events:
                await client.take_room()
                outbox.send_nowait(encode(event, data))


class _Client:
    """One control connection: its protocol state and its outgoing side. Every message
    to the client holds one unit of `room` from when its request is read until the
    writer has sent it; the outbox itself is unbounded so the fast path never waits."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = ControlServerConnection()
        self.outbox, self._outbox_receive = trio.open_memory_channel[bytes](math.inf)
        self.room = trio.Semaphore(MAX_UNWRITTEN_PER_CONNECTION)
        self.watches: set[trio.CancelScope] = set()
        self.fast_in_flight = 0
        self._fast_done = trio.Event()
        self.lingering = False  # framing was lost: close gently so the error arrives

    async def take_room(self) -> None:
        try:
            self.room.acquire_nowait()  # no checkpoint while there is room
        except trio.WouldBlock:
            await self.room.acquire()

    def queue(self, data: bytes) -> None:
        """Queue a message whose room is already taken."""
        self.outbox.send_nowait(data)

    async def send(self, data: bytes) -> None:
        await self.take_room()
        self.queue(data)

    def deliver(self, data: bytes) -> None:
        """Queue the reply of a fast-path command (called from the link's reader)."""
        self.fast_in_flight -= 1
        if self.fast_in_flight == 0:
            self._fast_done.set()
        # If the client left, the outcome is in the journal all the same.
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self.outbox.send_nowait(data)

    async def fast_idle(self) -> None:
        """Wait for the replies of fast-path commands still in flight."""
        while self.fast_in_flight:
            self._fast_done = trio.Event()
            await self._fast_done.wait()

    async def write_loop(self) -> None:
        """The connection's only writer; sends queued messages in batches."""
        async with self._outbox_receive:
            async for first in self._outbox_receive:
                batch = [first]
                while True:
                    try:
                        batch.append(self._outbox_receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self.stream.send_all(b"".join(batch))
                for _ in batch:
                    self.room.release()


# After a framing error, how long to keep reading (and dropping) what the client still
# sends, so closing does not reset the connection before it has read our reply.
LINGER_S = 1.0


async def _lingering_close(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(LINGER_S):
        if isinstance(stream, trio.SocketStream):
            await stream.send_eof()
        while await stream.receive_some(RECEIVE_CHUNK_BYTES):
            pass


def _unauthorized() -> RemoteProtocolError:
    return RemoteProtocolError(ErrorCode.UNAUTHORIZED, "unauthorized")
