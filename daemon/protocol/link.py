"""Sans-I/O core of the daemon's side of the addon link (PROTOCOL.md §1).

    conn = LinkConnection()
    request_id, data = conn.send_request("ping")      # bytes for the socket
    conn.receive_data(bytes_from_socket)              # b"" means EOF
    while not isinstance(event := conn.next_event(), NeedData): ...

It allocates request ids, keeps the table of pending requests, pairs responses with
them, and detects gaps in event `seq`. It holds no socket, clock or logger.
"""

from __future__ import annotations

import itertools

import msgspec

from .errors import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from .events import (
    NEED_DATA,
    ConnectionClosed,
    EventReceived,
    LinkConnectionEvent,
    ResponseReceived,
)
from .framing import DEFAULT_MAX_FRAME_BYTES, LineBuffer
from .messages import EMPTY_OBJECT, LinkEvent, LinkRequest, LinkResponse, RequestId
from .state import ConnectionState, Input, transition

_response_decoder = msgspec.json.Decoder(LinkResponse)
_event_decoder = msgspec.json.Decoder(LinkEvent)
_encoder = msgspec.json.Encoder()


class LinkConnection:
    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buffer = LineBuffer(max_frame_bytes)
        self._ids = itertools.count(1)
        self._eof = False
        self.state = ConnectionState.OPEN
        self.pending_requests: dict[RequestId, str] = {}  # id -> command type
        self._last_event_seq: int | None = None

    def send_request(
        self, type: str, params: msgspec.Raw | bytes | None = None
    ) -> tuple[int, bytes]:
        """Allocate an id, remember the request as pending, and return the bytes to send."""
        if self.state is not ConnectionState.OPEN:
            transition(self.state, Input.MESSAGE)  # raises: the connection is done
        request_id = next(self._ids)
        raw = EMPTY_OBJECT if params is None else msgspec.Raw(params)
        data = _encoder.encode(LinkRequest(type=type, id=request_id, params=raw)) + b"\n"
        self.pending_requests[request_id] = type
        return request_id, data

    def unterminated_tail(self) -> bytes:
        """Bytes received after the last complete line (to name a foreign peer)."""
        return self._buffer.unterminated_tail()

    def forget(self, request_id: RequestId) -> None:
        """Stop waiting for a request (it timed out); a late response is then dropped."""
        self.pending_requests.pop(request_id, None)

    def receive_data(self, data: bytes | bytearray) -> None:
        if data:
            self._buffer.feed(data)
        else:
            self._eof = True

    def next_event(self) -> LinkConnectionEvent:
        """Return the next complete event, or NEED_DATA.

        Raises RemoteProtocolError when the addon sends something that is not a
        response or event (the connection is then in ERROR: reconnect).
        """
        if self.state is ConnectionState.ERROR:
            transition(self.state, Input.MESSAGE)
        try:
            line = self._buffer.maybe_extract_line()
        except RemoteProtocolError:
            self.state = transition(self.state, Input.FRAMING_LOST)
            raise
        if line is None:
            if not self._eof:
                return NEED_DATA
            if len(self._buffer):
                self.state = transition(self.state, Input.FRAMING_LOST)
                raise RemoteProtocolError(
                    ErrorCode.BAD_REQUEST, "addon closed the link in the middle of a message"
                )
            self.state = transition(self.state, Input.EOF)
            return ConnectionClosed()
        if not line.strip():
            return self.next_event()
        try:
            return self._decode(line)
        except RemoteProtocolError:
            self.state = transition(self.state, Input.FRAMING_LOST)
            raise

    def _decode(self, line: bytes) -> ResponseReceived | EventReceived:
        try:
            response = _response_decoder.decode(line)
        except DECODE_ERRORS as response_error:
            try:
                event = _event_decoder.decode(line)
            except DECODE_ERRORS:
                raise RemoteProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"addon sent something that is neither a response nor an event: "
                    f"{line[:200]!r} ({response_error})",
                    framing_lost=True,
                ) from None
            return self._event(event)
        request_type = (
            self.pending_requests.pop(response.id, None) if response.id is not None else None
        )
        return ResponseReceived(response.id, response, request_type)

    def _event(self, event: LinkEvent) -> EventReceived:
        missed = 0
        if self._last_event_seq is not None and event.seq > self._last_event_seq + 1:
            missed = event.seq - self._last_event_seq - 1
        self._last_event_seq = event.seq
        return EventReceived(event, missed)
