"""NDJSON framing: a receive buffer that yields complete lines, with a size limit, and
the line reader both connection cores build on."""

from __future__ import annotations

from .errors import ErrorCode, RemoteProtocolError
from .events import NEED_DATA, ConnectionClosed, NeedData
from .limits import MAX_FRAME_BYTES
from .state import ConnectionState, Input, transition

DEFAULT_MAX_FRAME_BYTES = MAX_FRAME_BYTES


class LineBuffer:
    """Bytes in, complete `\\n`-terminated lines out.

    It remembers how far it has searched for a newline, so a large frame that arrives
    in small pieces costs O(n) rather than O(n^2).
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._data = bytearray()
        self._start = 0  # bytes before this offset were already handed out
        self._searched_to = 0  # no newline in [_start, _searched_to)
        self.max_frame_bytes = max_frame_bytes

    def __len__(self) -> int:
        return len(self._data) - self._start

    def feed(self, data: bytes | bytearray) -> None:
        self._data += data

    def maybe_extract_line(self) -> bytes | None:
        """Return the next line without its `\\n`, or None while it is incomplete.

        Raises RemoteProtocolError(bad_request, framing_lost=True) when a line is over
        the limit, as soon as that is known, without waiting for its newline.
        """
        data, start, searched_to = self._data, self._start, self._searched_to
        newline_at = data.find(b"\n", searched_to if searched_to > start else start)
        if newline_at == -1:
            self._searched_to = len(data)
            if len(data) - start > self.max_frame_bytes:
                raise _too_big(len(data) - start, self.max_frame_bytes)
            return None
        if newline_at - start > self.max_frame_bytes:
            raise _too_big(newline_at - start, self.max_frame_bytes)
        line = bytes(self._data[self._start : newline_at])
        self._start = newline_at + 1
        self._searched_to = self._start
        # Compact once the consumed prefix dominates, keeping appends amortised O(1).
        if self._start > 65536 and self._start * 2 > len(self._data):
            del self._data[: self._start]
            self._searched_to -= self._start
            self._start = 0
        return line

    def unterminated_tail(self) -> bytes:
        """Bytes of a line that has not got its newline (yet)."""
        return bytes(self._data[self._start :])

    def take_unterminated(self) -> bytes:
        """Hand out the unterminated tail (at EOF) and forget it."""
        tail = self.unterminated_tail()
        self._start = self._searched_to = len(self._data)
        return tail


class LineReader:
    """A connection's incoming side: bytes in, non-blank lines out, in a loop (never
    recursion: the peer decides how many blank lines come), with the connection state.

    `final_line_at_eof`: a last line without its newline is still a line when the
    peer closes (clients like `printf ... | nc`); otherwise it is a framing error.
    """

    def __init__(self, max_frame_bytes: int, *, final_line_at_eof: bool) -> None:
        self.buffer = LineBuffer(max_frame_bytes)
        self.state = ConnectionState.OPEN
        self._final_line_at_eof = final_line_at_eof
        self._eof = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the peer; `b""` means EOF."""
        if data:
            self.buffer.feed(data)
        else:
            self._eof = True

    def next_line(self) -> bytes | ConnectionClosed | NeedData:
        """The next non-blank line, ConnectionClosed at EOF, or NEED_DATA.

        Raises RemoteProtocolError (framing_lost) for an oversized line or a torn one
        at EOF; the state is then ERROR and every later call raises LocalProtocolError.
        """
        if self.state is not ConnectionState.OPEN:
            self.state = transition(self.state, Input.EOF if self._eof else Input.MESSAGE)
            return ConnectionClosed()
        while True:
            try:
                line = self.buffer.maybe_extract_line()
            except RemoteProtocolError:
                self.state = transition(self.state, Input.FRAMING_LOST)
                raise
            if line is None:
                if not self._eof:
                    return NEED_DATA
                tail = self.buffer.take_unterminated()
                if tail.strip() and self._final_line_at_eof:
                    return tail
                if tail.strip():
                    self.state = transition(self.state, Input.FRAMING_LOST)
                    raise RemoteProtocolError(
                        ErrorCode.BAD_REQUEST,
                        "the peer closed the connection in the middle of a message",
                        framing_lost=True,
                    )
                self.state = transition(self.state, Input.EOF)
                return ConnectionClosed()
            if line.strip():
                return line

    def fail(self) -> None:
        """Framing is lost for a reason the caller found (a line that is not a message)."""
        self.state = transition(self.state, Input.FRAMING_LOST)


def _too_big(size: int, limit: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.BAD_REQUEST,
        f"frame of {size} bytes is over the limit of {limit} bytes; "
        "send smaller messages (one JSON object per line)",
        framing_lost=True,
    )
