"""Sans-I/O core of the daemon's side of the addon link (PROTOCOL.md §1).

    conn = LinkConnection()
    request_id, data = conn.send_request("ping", None, waiter)   # bytes for the socket
    conn.receive_data(bytes_from_socket)                          # b"" means EOF
    while not isinstance(event := conn.next_event(), NeedData): ...

It allocates request ids and keeps the one table of pending requests: each entry holds
the command type and the glue's `context` (who waits for the answer), so a response
comes back paired with it. A request whose sender was already answered (it timed
out, or Blender stopped answering) stays in the table as *late*, so that an answer
arriving afterwards still reaches the session's record; late entries are bounded. It
detects gaps in event `seq`. It holds no socket, clock or logger.
"""

from __future__ import annotations

import itertools
import json
from collections import deque

import msgspec

from .errors import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from .events import (
    EventReceived,
    LinkConnectionEvent,
    PendingRequest,
    ResponseReceived,
    UnreadableReply,
)
from .framing import DEFAULT_MAX_FRAME_BYTES, LineReader
from .messages import EMPTY_OBJECT, LinkEvent, LinkRequest, LinkResponse, RequestId
from .state import ConnectionState, Input, transition

# Late requests kept per connection: each is a few hundred bytes, and past this many
# unanswered commands Blender is not coming back with answers.
MAX_LATE_REQUESTS = 4096

_response_decoder = msgspec.json.Decoder(LinkResponse)
_event_decoder = msgspec.json.Decoder(LinkEvent)
_encoder = msgspec.json.Encoder()


class LinkConnection:
    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._reader = LineReader(max_frame_bytes, final_line_at_eof=False)
        self._ids = itertools.count(1)
        self.pending_requests: dict[RequestId, PendingRequest] = {}  # in send order
        self._late: deque[RequestId] = deque()
        self._last_event_seq: int | None = None

    @property
    def state(self) -> ConnectionState:
        return self._reader.state

    def send_request(
        self, type: str, params: msgspec.Raw | bytes | None = None, context: object = None
    ) -> tuple[int, bytes]:
        """Allocate an id, remember the request as pending, and return the bytes to send."""
        if self.state is not ConnectionState.OPEN:
            transition(self.state, Input.MESSAGE)  # raises: the connection is done
        request_id = next(self._ids)
        raw = EMPTY_OBJECT if params is None else msgspec.Raw(params)
        data = _encoder.encode(LinkRequest(type=type, id=request_id, params=raw)) + b"\n"
        self.pending_requests[request_id] = PendingRequest(type, context)
        return request_id, data

    def unterminated_tail(self) -> bytes:
        """Bytes received after the last complete line (to name a foreign peer)."""
        return self._reader.buffer.unterminated_tail()

    def expire(self, request_id: RequestId) -> None:
        """Its sender was answered without the addon's answer: keep it as late."""
        pending = self.pending_requests.get(request_id)
        if pending is None or pending.late:
            return
        pending.late = True
        self._late.append(request_id)
        while len(self._late) > MAX_LATE_REQUESTS:
            self.pending_requests.pop(self._late.popleft(), None)

    def forget(self, request_id: RequestId) -> None:
        """Stop waiting for a request: an answer to it is then dropped."""
        self.pending_requests.pop(request_id, None)

    def take_all_pending(self) -> list[PendingRequest]:
        """Every pending request, removed (the connection is gone: none will be answered)."""
        pending = list(self.pending_requests.values())
        self.pending_requests.clear()
        self._late.clear()
        return pending

    def receive_data(self, data: bytes | bytearray) -> None:
        self._reader.receive_data(data)

    def next_event(self) -> LinkConnectionEvent:
        """Return the next complete event, or NEED_DATA.

        Raises RemoteProtocolError when the addon sends something that is not a
        response or event (the connection is then in ERROR: reconnect).
        """
        line = self._reader.next_line()
        if not isinstance(line, bytes):
            return line
        try:
            return self._decode(line)
        except RemoteProtocolError:
            self._reader.fail()
            raise

    def _decode(self, line: bytes) -> ResponseReceived | EventReceived:
        response: LinkResponse | UnreadableReply
        try:
            decoded = _response_decoder.decode(line)
        except DECODE_ERRORS as response_error:
            try:
                return self._event(_event_decoder.decode(line))
            except DECODE_ERRORS:
                pass
            request_id = _readable_id(line)
            if request_id is None:
                raise RemoteProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"addon sent something that is neither a response nor an event: "
                    f"{line[:200]!r} ({response_error})",
                    framing_lost=True,
                ) from None
            # A reply to a request of ours that the daemon cannot read (a lone surrogate,
            # a number out of range): that request fails, the link goes on.
            response = UnreadableReply(reason=str(response_error))
        else:
            request_id, response = decoded.id, decoded
        pending = self.pending_requests.pop(request_id, None) if request_id is not None else None
        return ResponseReceived(request_id, response, pending)

    def _event(self, event: LinkEvent) -> EventReceived:
        missed = 0
        if self._last_event_seq is not None and event.seq > self._last_event_seq + 1:
            missed = event.seq - self._last_event_seq - 1
        self._last_event_seq = event.seq
        return EventReceived(event, missed)


def _readable_id(line: bytes) -> RequestId | None:
    """The id of a response-shaped line msgspec refused, read leniently (the stdlib
    reads lone surrogates, NaN and huge numbers), or None."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or value.get("status") not in ("success", "error"):
        return None
    request_id = value.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    return request_id
