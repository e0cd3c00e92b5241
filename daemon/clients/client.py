"""A blocking client for the control port, built on the sans-I/O control core.
Used by the CLI; scripts may use it too."""

from __future__ import annotations

import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import msgspec
from ulid import ULID

from ..protocol import NEED_DATA, ConnectionClosed, ControlClientConnection, ErrorCode
from ..protocol.messages import ControlResponse
from ..store.datadir import ENDPOINT_FILE, TOKEN_FILE

RECEIVE_CHUNK_BYTES = 256 * 1024


class Endpoint(msgspec.Struct):
    host: str
    port: int
    pid: int = 0


class ClientError(Exception):
    """An error reply from the daemon (`code` is the wire code) or a local failure
    (`code` is None: no daemon, no token)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UsageError(ClientError):
    """What the command line itself got wrong (the CLI exits 2, like argparse)."""


def find_endpoint(data_dir: Path, port: int | None = None) -> tuple[str, int, str]:
    """(host, port, token) of the daemon that uses `data_dir`."""
    try:
        token = (data_dir / TOKEN_FILE).read_text().strip()
    except OSError:
        raise ClientError(
            f"no control token in {data_dir}; is blender-sessiond running with this data dir? "
            f"(start it with: blender-sessiond --data-dir {shlex.quote(str(data_dir))})"
        ) from None
    if port is not None:
        return "127.0.0.1", port, token
    try:
        endpoint = msgspec.json.decode((data_dir / ENDPOINT_FILE).read_bytes(), type=Endpoint)
    except (OSError, msgspec.DecodeError):
        raise ClientError(
            f"no running daemon found for {data_dir} (no {ENDPOINT_FILE}); start it with: "
            f"blender-sessiond --data-dir {shlex.quote(str(data_dir))}"
        ) from None
    return endpoint.host, endpoint.port, token


class Caller(Protocol):
    """What sends an op and gives its result's bytes: the daemon (ControlClient), or
    the data dir read directly when no daemon answers (offline.OfflineClient)."""

    def call(self, op: str, params: object | None = None) -> bytes: ...


class ControlClient:
    def __init__(self, host: str, port: int, token: str, *, timeout_s: float = 120.0) -> None:
        self.client_id = str(ULID())
        self._conn = ControlClientConnection(token, self.client_id)
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as error:
            raise ClientError(
                f"cannot reach blender-sessiond at {host}:{port}: {error.strerror or error} "
                "(start it with: blender-sessiond)"
            ) from None

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, op: str, params: object | None = None) -> msgspec.Raw:
        """Send one request and return its result's raw JSON. Raises ClientError."""
        body = None if params is None else msgspec.json.encode(params)
        _, data = self._conn.send_request(op, body)
        self._sock.sendall(data)
        reply = self._next()
        if reply.ok:
            return reply.result
        error = reply.error
        assert error is not None
        raise ClientError(error.message, error.code)

    def stream(self, op: str, params: object | None = None) -> Iterator[ControlResponse]:
        """Send a streaming request (`watch`) and yield what comes back until EOF."""
        body = None if params is None else msgspec.json.encode(params)
        _, data = self._conn.send_request(op, body)
        self._sock.sendall(data)
        self._sock.settimeout(None)
        while True:
            item = self._next()
            if item.ok is False and item.error is not None:
                raise ClientError(item.error.message, item.error.code)
            yield item

    def _next(self) -> ControlResponse:
        while True:
            event = self._conn.next_event()
            if isinstance(event, ControlResponse):
                return event
            if isinstance(event, ConnectionClosed):
                raise ClientError("the daemon closed the connection", ErrorCode.INTERNAL.value)
            assert event is NEED_DATA
            try:
                data = self._sock.recv(RECEIVE_CHUNK_BYTES)
            except TimeoutError:
                raise ClientError(
                    "the daemon did not answer in time", ErrorCode.TIMEOUT.value
                ) from None
            self._conn.receive_data(data)
