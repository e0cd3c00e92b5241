"""The control port: loopback TCP, NDJSON, token-checked (PROTOCOL.md §2).

One handler per client connection, with a reader (this task), a single writer task,
and a task per request so pipelined requests run concurrently. Each connection's
in-flight requests and outgoing replies are bounded, so a client that stops reading
stalls only itself.
"""

from __future__ import annotations

import hmac
from functools import partial

import msgspec
import structlog
import trio

from ..protocol import (
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
from ..sessions import SessionManager
from .ops import STREAMING_OPS, OpContext, lookup

log = structlog.get_logger("control")

# Requests one connection may have in flight before the server stops reading from it:
# enough for deep pipelining, small enough that a flood costs bounded memory.
MAX_IN_FLIGHT_PER_CONNECTION = 256
# Replies waiting for a slow reader before request tasks block on it.
OUTBOX_REPLIES = 256
RECEIVE_CHUNK_BYTES = 64 * 1024
# Requests one client (by client_id) may have in flight before the excess is answered
# `busy` at once: deep enough for pipelining, a clear signal instead of a silent queue.
DEFAULT_MAX_IN_FLIGHT_PER_CLIENT = 128
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


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
        # Connections whose framing was lost: closed gently so the error reply arrives.
        self._lingering: set[trio.abc.Stream] = set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve; `started()` reports the bound port (useful with port 0)."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        port = int(listeners[0].socket.getsockname()[1])
        log.info("control_listening", host=self.host, port=port)
        task_status.started(port)
        await trio.serve_listeners(self.handle_connection, listeners)

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        conn = ControlServerConnection()
        outbox_send, outbox_receive = trio.open_memory_channel[bytes](OUTBOX_REPLIES)
        limiter = trio.CapacityLimiter(MAX_IN_FLIGHT_PER_CONNECTION)
        watches: set[trio.CancelScope] = set()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_loop, stream, outbox_receive)
                # Each request task holds its own clone of the outbox; the writer ends
                # once the reader and every request task are done with theirs, so
                # requests in flight at EOF still get their replies.
                async with outbox_send:
                    await self._read_loop(stream, conn, nursery, outbox_send, limiter, watches)
                for scope in watches:  # a watch streams until the client hangs up: it has
                    scope.cancel()
            if stream in self._lingering:
                await _lingering_close(stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; its in-flight requests were cancelled with it
        finally:
            self._lingering.discard(stream)
            await trio.aclose_forcefully(stream)

    async def _read_loop(
        self,
        stream: trio.abc.Stream,
        conn: ControlServerConnection,
        nursery: trio.Nursery,
        outbox: trio.MemorySendChannel[bytes],
        limiter: trio.CapacityLimiter,
        watches: set[trio.CancelScope],
    ) -> None:
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as error:  # framing lost: answer, then close
                await outbox.send(conn.send_error(None, error))
                self._lingering.add(stream)
                return
            match event:
                case RequestReceived(request=request):
                    if not self._authorized(request.token):
                        await outbox.send(conn.send_error(request.id, _unauthorized()))
                        continue
                    client_key = request.client_id or f"connection-{id(conn)}"
                    if not self._take_slot(client_key):
                        await outbox.send(conn.send_error(request.id, self._busy(request)))
                        continue
                    borrower = object()
                    await limiter.acquire_on_behalf_of(borrower)
                    nursery.start_soon(
                        self._serve_request,
                        request,
                        outbox.clone(),
                        limiter,
                        borrower,
                        client_key,
                        watches,
                    )
                case BadMessage(error=bad_request, request_id=request_id, token=token):
                    problem = bad_request if self._authorized(token) else _unauthorized()
                    await outbox.send(conn.send_error(request_id, problem))
                case ConnectionClosed():
                    return
                case _:
                    assert event is NEED_DATA
                    data = await stream.receive_some(RECEIVE_CHUNK_BYTES)
                    conn.receive_data(data)

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
        limiter: trio.CapacityLimiter,
        borrower: object,
        client_key: str,
        watches: set[trio.CancelScope],
    ) -> None:
        """The handler edge: every exception becomes a wire error here, and only here."""
        try:
            async with outbox:
                await self._serve_request_to(request, outbox, watches)
        finally:
            limiter.release_on_behalf_of(borrower)
            self._release_slot(client_key)

    async def _serve_request_to(
        self,
        request: ControlRequest,
        outbox: trio.MemorySendChannel[bytes],
        watches: set[trio.CancelScope],
    ) -> None:
        with structlog.contextvars.bound_contextvars(client_id=request.client_id, op=request.op):
            if request.op in STREAMING_OPS:
                with trio.CancelScope() as scope:
                    watches.add(scope)
                    try:
                        await self._watch(request.id, outbox)
                    finally:
                        watches.discard(scope)
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
            await outbox.send(reply)

    async def _watch(
        self, request_id: RequestId | None, outbox: trio.MemorySendChannel[bytes]
    ) -> None:
        """Stream events until the client hangs up (which cancels this task)."""
        encode = partial(ControlServerConnection.send_event, request_id)
        with self.manager.events.subscribe() as events:
            await outbox.send(encode("watching", msgspec.json.encode(self.manager.status())))
            async for event, data in events:
                await outbox.send(encode(event, data))


async def _write_loop(stream: trio.abc.Stream, outbox: trio.MemoryReceiveChannel[bytes]) -> None:
    """The connection's only writer; sends queued replies in batches."""
    async with outbox:
        async for first in outbox:
            batch = [first]
            while True:
                try:
                    batch.append(outbox.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await stream.send_all(b"".join(batch))


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
