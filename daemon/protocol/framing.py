"""NDJSON framing: a receive buffer that yields complete lines, with a size limit."""

from __future__ import annotations

from .errors import ErrorCode, RemoteProtocolError

# 16 MiB: a get_state snapshot of 10,000 objects is about 1.6 MB, so this leaves an
# order of magnitude of headroom while bounding what one peer can make us buffer.
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024


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
        newline_at = self._data.find(b"\n", max(self._searched_to, self._start))
        if newline_at == -1:
            self._searched_to = len(self._data)
            if len(self) > self.max_frame_bytes:
                raise _too_big(len(self), self.max_frame_bytes)
            return None
        if newline_at - self._start > self.max_frame_bytes:
            raise _too_big(newline_at - self._start, self.max_frame_bytes)
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
        """What is left after EOF: bytes of a line that never got its newline."""
        return bytes(self._data[self._start :])


def _too_big(size: int, limit: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.BAD_REQUEST,
        f"frame of {size} bytes is over the limit of {limit} bytes; "
        "send smaller messages (one JSON object per line)",
        framing_lost=True,
    )
