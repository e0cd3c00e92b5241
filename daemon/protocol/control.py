"""Sans-I/O cores of the control protocol (PROTOCOL.md §2): server and client ends.

The server end reads lines of at most PRE_AUTH_FRAME_BYTES until the I/O glue says a
request carried the right token (`authenticated()`), then of MAX_FRAME_BYTES, so an
unauthenticated peer costs the daemon tens of KiB, not 16 MiB. A first request longer
than that is still taken when it starts with its token (`{"token": "...", ...`, as
this project's clients write every request): `leading_token()` reads it from the first
bytes, and the glue authenticates the connection before the line is complete.
"""

from __future__ import annotations

import itertools
import json
import re

import msgspec

from .errors import DECODE_ERRORS, ErrorCode, ProtocolError, RemoteProtocolError
from .events import BadMessage, ConnectionClosed, ControlConnectionEvent, NeedData, RequestReceived
from .framing import LineReader
from .limits import MAX_FRAME_BYTES, MAX_REPLY_FRAME_BYTES, PRE_AUTH_FRAME_BYTES
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
from .state import ConnectionState

_request_decoder = msgspec.json.Decoder(ControlRequest)
_response_decoder = msgspec.json.Decoder(ControlResponse)
_encoder = msgspec.json.Encoder()


class _IdProbe(msgspec.Struct):
    id: RequestId | None = None
    token: str | None = None


_id_probe_decoder = msgspec.json.Decoder(_IdProbe)
# Last resort for a line no JSON reader takes (nested past any recursion limit).
_ID_FIELD = re.compile(rb'"id"\s*:\s*(-?[0-9]{1,18}(?![0-9.eE])|"[^"\\]{0,200}")')
_TOKEN_FIELD = re.compile(rb'"token"\s*:\s*"([^"\\]{1,200})"')
_LEADING_TOKEN = re.compile(rb'\s*\{\s*"token"\s*:\s*"([^"\\]{1,200})"')


class ControlServerConnection:
    """Bytes from a client in, requests out; replies in, bytes out."""

    def __init__(
        self,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        pre_auth_frame_bytes: int = PRE_AUTH_FRAME_BYTES,
    ) -> None:
        self._max_frame_bytes = max_frame_bytes
        self._reader = LineReader(
            min(pre_auth_frame_bytes, max_frame_bytes), final_line_at_eof=True
        )
        self.is_authenticated = False

    @property
    def state(self) -> ConnectionState:
        return self._reader.state

    def receive_data(self, data: bytes | bytearray) -> None:
        self._reader.receive_data(data)

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not handed out yet (what this peer makes us hold)."""
        return len(self._reader.buffer)

    def leading_token(self) -> str | None:
        """The token a pending line starts with, if it does (see the module docstring)."""
        match = _LEADING_TOKEN.match(self._reader.buffer.unterminated_tail()[:512])
        return match.group(1).decode("ascii", "replace") if match else None

    def authenticated(self) -> None:
        """A request carried the right token: lines may now be full size."""
        self.is_authenticated = True
        self._reader.buffer.max_frame_bytes = self._max_frame_bytes

    def next_event(self) -> ControlConnectionEvent:
        """RequestReceived, BadMessage (answer it and go on), ConnectionClosed or NEED_DATA.

        Raises RemoteProtocolError(framing_lost=True) for an oversized line: answer
        with its code, then close.
        """
        line = self._reader.next_line()
        if not isinstance(line, bytes):
            return line
        try:
            return RequestReceived(_request_decoder.decode(line))
        except DECODE_ERRORS as error:
            request_id, token = _probe(line)
            return BadMessage(_bad_request(line, error), request_id, token)

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


class ControlClientConnection:
    """The client end: requests out, replies and watch events in."""

    def __init__(
        self, token: str, client_id: str, max_frame_bytes: int = MAX_REPLY_FRAME_BYTES
    ) -> None:
        self._reader = LineReader(max_frame_bytes, final_line_at_eof=False)
        self._token = token
        self._client_id = client_id
        self._ids = itertools.count(1)

    @property
    def state(self) -> ConnectionState:
        return self._reader.state

    def receive_data(self, data: bytes | bytearray) -> None:
        self._reader.receive_data(data)

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
        line = self._reader.next_line()
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
            self._reader.fail()
            raise RemoteProtocolError(
                ErrorCode.BAD_REQUEST, f"daemon sent an invalid reply: {detail} ({line[:120]!r})"
            )
        return decoded


def _bad_request(line: bytes, error: Exception) -> RemoteProtocolError:
    reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
    return RemoteProtocolError(
        ErrorCode.BAD_REQUEST,
        f"not a valid message: {reason} (got {line[:120]!r}); send one JSON object per line "
        'like {"id": 1, "op": "status", "token": "..."}',
    )


def _probe(line: bytes) -> tuple[RequestId | None, str | None]:
    """The id and token of a request that failed validation, where they can be read,
    so the server can check the token and the error can carry the id: a pipelining
    client must be able to match every reply."""
    try:
        probe = _id_probe_decoder.decode(line)
        return probe.id, probe.token
    except DECODE_ERRORS:
        pass
    try:  # the stdlib reads NaN, lone surrogates and invalid UTF-8 (replaced)
        value = json.loads(line.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        request_id, token = value.get("id"), value.get("token")
        readable_id = (
            _encodable(request_id)
            if isinstance(request_id, int | str) and not isinstance(request_id, bool)
            else None
        )
        return readable_id, _clean_text(token) if isinstance(token, str) else None
    id_match, token_match = _ID_FIELD.search(line), _TOKEN_FIELD.search(line)
    found_id: RequestId | None = None
    if id_match is not None:
        text = id_match.group(1)
        found_id = text[1:-1].decode("utf-8", "replace") if text[:1] == b'"' else int(text)
    found_token = token_match.group(1).decode("utf-8", "replace") if token_match else None
    return found_id, found_token


def _encodable(value: RequestId) -> RequestId:
    """An id read leniently, made safe to echo: an integer outside 64 bits becomes its
    (truncated) text; text loses its lone surrogates."""
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)[:40]
    return _clean_text(value)


def _clean_text(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")
