"""Sans-I/O cores of the control protocol (PROTOCOL.md §2): server and client ends."""

from __future__ import annotations

import itertools

import msgspec

from .errors import DECODE_ERRORS, ErrorCode, ProtocolError, RemoteProtocolError
from .events import (
    NEED_DATA,
    BadMessage,
    ConnectionClosed,
    ControlConnectionEvent,
    NeedData,
    RequestReceived,
)
from .framing import DEFAULT_MAX_FRAME_BYTES, LineBuffer
from .messages import (
    EMPTY_OBJECT,
    ControlEvent,
    ControlFailure,
    ControlOk,
    ControlRequest,
    ControlResponse,
    ErrorBody,
    RequestId,
)
from .state import ConnectionState, Input, transition

_request_decoder = msgspec.json.Decoder(ControlRequest)
_response_decoder = msgspec.json.Decoder(ControlResponse)
_encoder = msgspec.json.Encoder()


class _IdProbe(msgspec.Struct):
    id: RequestId | None = None
    token: str | None = None


_id_probe_decoder = msgspec.json.Decoder(_IdProbe)


class _LineConnection:
    def __init__(self, max_frame_bytes: int) -> None:
        self._buffer = LineBuffer(max_frame_bytes)
        self._eof = False
        self.state = ConnectionState.OPEN

    def receive_data(self, data: bytes | bytearray) -> None:
        if data:
            self._buffer.feed(data)
        else:
            self._eof = True

    def _next_line(self) -> bytes | ConnectionClosed | NeedData:
        if self.state is ConnectionState.ERROR:
            transition(self.state, Input.MESSAGE)
        while True:
            try:
                line = self._buffer.maybe_extract_line()
            except RemoteProtocolError:
                self.state = transition(self.state, Input.FRAMING_LOST)
                raise
            if line is None:
                if not self._eof:
                    return NEED_DATA
                self.state = transition(self.state, Input.EOF)
                return ConnectionClosed()
            if line.strip():
                return line


class ControlServerConnection(_LineConnection):
    """Bytes from a client in, requests out; replies in, bytes out."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes)

    def next_event(self) -> ControlConnectionEvent:
        """RequestReceived, BadMessage (answer it and go on), ConnectionClosed or NEED_DATA.

        Raises RemoteProtocolError(framing_lost=True) for an oversized frame: answer
        with its code, then close.
        """
        line = self._next_line()
        if not isinstance(line, bytes):
            return line
        try:
            return RequestReceived(_request_decoder.decode(line))
        except DECODE_ERRORS as error:
            probe = _probe(line)
            return BadMessage(_bad_request(line, error), probe.id, probe.token)

    @staticmethod
    def send_result(request_id: RequestId | None, result: bytes) -> bytes:
        """`result` is already-encoded JSON."""
        reply = ControlOk(id=request_id, result=msgspec.Raw(result))
        return _encoder.encode(reply) + b"\n"

    @staticmethod
    def send_error(request_id: RequestId | None, error: ProtocolError) -> bytes:
        body = ErrorBody(code=error.code.value, message=error.message)
        return _encoder.encode(ControlFailure(id=request_id, error=body)) + b"\n"

    @staticmethod
    def send_event(request_id: RequestId | None, event: str, data: bytes) -> bytes:
        return (
            _encoder.encode(ControlEvent(id=request_id, event=event, data=msgspec.Raw(data)))
            + b"\n"
        )


class ControlClientConnection(_LineConnection):
    """The client end: requests out, replies and watch events in."""

    def __init__(
        self, token: str, client_id: str, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    ) -> None:
        super().__init__(max_frame_bytes)
        self._token = token
        self._client_id = client_id
        self._ids = itertools.count(1)

    def send_request(self, op: str, params: bytes | None = None) -> tuple[int, bytes]:
        request_id = next(self._ids)
        request = ControlRequest(
            op=op,
            id=request_id,
            params=EMPTY_OBJECT if params is None else msgspec.Raw(params),
            token=self._token,
            client_id=self._client_id,
        )
        return request_id, _encoder.encode(request) + b"\n"

    def next_event(self) -> ControlResponse | ConnectionClosed | NeedData:
        """A reply (`ok` set) or a watch event (`event` set), ConnectionClosed or NEED_DATA."""
        line = self._next_line()
        if not isinstance(line, bytes):
            return line
        try:
            decoded = _response_decoder.decode(line)
        except DECODE_ERRORS as error:
            decoded = None
            detail = str(error)
        else:
            detail = "neither `ok` nor `event` is set"
        if decoded is None or (decoded.ok is None and decoded.event is None):
            self.state = transition(self.state, Input.FRAMING_LOST)
            raise RemoteProtocolError(
                ErrorCode.BAD_REQUEST, f"daemon sent an invalid reply: {detail} ({line[:120]!r})"
            )
        return decoded


def _bad_request(line: bytes, error: Exception) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.BAD_REQUEST,
        f"not a valid message: {error} (got {line[:120]!r}); send one JSON object per line "
        'like {"id": 1, "op": "status", "token": "..."}',
    )


def _probe(line: bytes) -> _IdProbe:
    """The id and token of a request that failed validation, where they can be read,
    so the server can check the token and the error can carry the id."""
    try:
        return _id_probe_decoder.decode(line)
    except DECODE_ERRORS:
        return _IdProbe()
