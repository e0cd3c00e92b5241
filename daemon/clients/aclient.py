"""An async (trio) client for the control port, on the same sans-I/O core as the CLI's
blocking client. Used by the MCP server and the tests."""

from __future__ import annotations

import msgspec
import trio
from ulid import ULID

from ..protocol import NEED_DATA, ConnectionClosed, ControlClientConnection, ErrorCode
from ..protocol.messages import ControlResponse
from .client import ClientError

RECEIVE_CHUNK_BYTES = 256 * 1024


class AsyncControlClient:
    def __init__(self, stream: trio.SocketStream, token: str, client_id: str) -> None:
        self.stream = stream
        self.client_id = client_id
        self.conn = ControlClientConnection(token, client_id)
        self._lock = trio.Lock()  # one request/reply exchange at a time on this stream

    @classmethod
    async def connect(
        cls, port: int, token: str, client_id: str | None = None, host: str = "127.0.0.1"
    ) -> AsyncControlClient:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as error:
            raise ClientError(
                f"cannot reach blender-sessiond at {host}:{port}: {error} "
                "(start it with: blender-sessiond)"
            ) from None
        return cls(stream, token, client_id or str(ULID()))

    async def send(self, op: str, params: object = None) -> int:
        body = None if params is None else msgspec.json.encode(params)
        request_id, data = self.conn.send_request(op, body)
        await self.stream.send_all(data)
        return request_id

    async def receive(self) -> ControlResponse:
        while True:
            event = self.conn.next_event()
            if isinstance(event, ControlResponse):
                return event
            if isinstance(event, ConnectionClosed):
                raise ClientError("the daemon closed the connection", ErrorCode.INTERNAL.value)
            assert event is NEED_DATA
            self.conn.receive_data(await self.stream.receive_some(RECEIVE_CHUNK_BYTES))

    async def call(self, op: str, params: object = None) -> ControlResponse:
        async with self._lock:
            await self.send(op, params)
            return await self.receive()

    async def result(self, op: str, params: object = None) -> object:
        """The decoded result of `op` (plain JSON values), or ClientError with the
        daemon's code."""
        reply = await self.call(op, params)
        if not reply.ok:
            assert reply.error is not None
            raise ClientError(reply.error.message, reply.error.code)
        return msgspec.json.decode(reply.result)

    async def aclose(self) -> None:
        await self.stream.aclose()
