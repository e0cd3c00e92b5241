"""Sans-I/O framing for the addon's port: detects, per connection, which of three
framings a client speaks, and answers in the same one (PROTOCOL.md §1).

- ndjson / bare JSON: JSON objects back to back in the byte stream, with or without
  newlines between them (newer daemons and scripts send NDJSON; older blender-mcp
  clients send one bare object and wait). Replies are JSON plus "\\n", which both read.
- length-prefixed: a 4-byte big-endian length, then that many bytes of JSON (newer
  blender-mcp clients). Replies carry the same prefix.

The first byte decides: a JSON text starts with a printable byte or whitespace; a
length prefix of a frame under 16 MiB starts with 0x00 or 0x01.

Standard library only: this runs inside Blender's Python.
"""

from __future__ import annotations

import json
import re
import struct

from .vocabulary import JSONObject

# 16 MiB, the same limit as the daemon: a 10,000-object get_state is about 1.6 MB.
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

JSON_TEXT = "json"
LENGTH_PREFIXED = "length"
_WHITESPACE = b" \t\r\n"
# Bytes that matter while scanning for the end of a JSON object or array.
_STRUCTURAL = re.compile(rb'["\\{}\[\]]')
_IN_STRING = re.compile(rb'["\\]')


class FrameError(Exception):
    """A frame that cannot be a request. `framing_lost`: answer, then close.
    `request_id`: the request's id where it could still be read, so the answer carries
    it and a pipelining client can match it."""

    def __init__(
        self, code: str, message: str, framing_lost: bool = False, request_id: object = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.framing_lost = framing_lost
        self.request_id = request_id


class FrameDecoder:
    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.framing: str | None = None
        self._buffer = bytearray()
        # Scanner state for the JSON value being read, so each byte is scanned once.
        self._scan_pos = 0
        self._depth = 0
        self._in_string = False
        self.lost = False

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data

    def next_frame(self) -> object | FrameError | None:
        """The next decoded JSON value, a FrameError for a bad frame whose framing is
        intact (answer it and go on), or None while more bytes are needed.

        Raises FrameError(framing_lost=True) when the stream can no longer be framed.
        """
        body = self.next_body()
        if body is None or isinstance(body, FrameError):
            return body
        return _decode(body)

    def next_body(self) -> bytes | FrameError | None:
        """Like next_frame, but the frame's JSON bytes, not parsed (the daemon's proxy
        decodes them itself)."""
        if self.lost:
            raise FrameError("bad_request", "framing was lost earlier", framing_lost=True)
        try:
            if self.framing is None and not self._detect():
                return None
            if self.framing == LENGTH_PREFIXED:
                return self._next_length_prefixed()
            return self._next_json_text()
        except FrameError as error:
            if error.framing_lost:
                self.lost = True
            raise

    def encode(self, message: JSONObject) -> bytes:
        return self.frame(json.dumps(message, separators=(",", ":")).encode())

    def frame(self, body: bytes) -> bytes:
        """A JSON body framed the way this connection's client speaks."""
        if self.framing == LENGTH_PREFIXED:
            return struct.pack(">I", len(body)) + body
        return body + b"\n"

    def _detect(self) -> bool:
        stripped = self._buffer.lstrip(_WHITESPACE)
        if not stripped:
            self._buffer.clear()
            return False
        first = stripped[0]
        self.framing = JSON_TEXT if 0x20 <= first <= 0x7E else LENGTH_PREFIXED
        return True

    # --- length-prefixed ------------------------------------------------------------

    def _next_length_prefixed(self) -> bytes | FrameError | None:
        if len(self._buffer) < 4:
            return None
        (size,) = struct.unpack(">I", self._buffer[:4])
        if size > self.max_frame_bytes:
            raise _too_big(size, self.max_frame_bytes)
        if len(self._buffer) < 4 + size:
            return None
        body = bytes(self._buffer[4 : 4 + size])
        del self._buffer[: 4 + size]
        return body

    # --- JSON text (NDJSON or bare objects back to back) ----------------------------

    def _next_json_text(self) -> bytes | FrameError | None:
        buffer = self._buffer
        if self._scan_pos == 0:
            start = len(buffer) - len(buffer.lstrip(_WHITESPACE))
            if start:
                del buffer[:start]
            if not buffer:
                return None
            if buffer[0] not in b"{[":
                return self._skip_line("request is not a JSON object")
            self._scan_pos, self._depth, self._in_string = 1, 1, False
        end = self._scan()
        if end is None:
            if len(buffer) > self.max_frame_bytes:
                raise _too_big(len(buffer), self.max_frame_bytes)
            return None
        body = bytes(buffer[:end])
        del buffer[:end]
        self._scan_pos = 0
        return body

    def _scan(self) -> int | None:
        """Advance the scanner; return the end offset of the value once it closes."""
        buffer, pos = self._buffer, self._scan_pos
        while True:
            pattern = _IN_STRING if self._in_string else _STRUCTURAL
            match = pattern.search(buffer, pos)
            if match is None:
                self._scan_pos = len(buffer)
                return None
            char, pos = buffer[match.start()], match.start() + 1
            if char == 0x5C:  # backslash: skip the escaped byte
                if pos >= len(buffer):
                    self._scan_pos = match.start()
                    return None
                pos += 1
            elif char == 0x22:  # quote
                self._in_string = not self._in_string
            elif char in b"{[":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    self._scan_pos = pos
                    return pos

    def _skip_line(self, reason: str) -> FrameError | None:
        newline = self._buffer.find(b"\n")
        if newline == -1:
            if len(self._buffer) > self.max_frame_bytes:
                raise _too_big(len(self._buffer), self.max_frame_bytes)
            return None
        shown = bytes(self._buffer[: min(newline, 60)])
        del self._buffer[: newline + 1]
        return FrameError("bad_request", f"{reason}: {shown!r}; send one JSON object per line")


def _decode(body: bytes) -> object | FrameError:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        return FrameError("bad_request", f"malformed JSON: {error}", request_id=readable_id(body))
    except RecursionError:
        return FrameError(
            "bad_request", "malformed JSON: nested too deeply", request_id=readable_id(body)
        )
    if not isinstance(value, dict):
        return FrameError(
            "bad_request", f"request must be a JSON object, got {type(value).__name__}"
        )
    return value


_ID_FIELD = re.compile(rb'"id"\s*:\s*(-?[0-9]{1,18}(?![0-9.eE])|"[^"\\]{0,200}")')


def readable_id(body: bytes) -> object:
    """The id of a request that is not valid JSON, where it can still be read (invalid
    UTF-8 is replaced; nesting past any parser's limit leaves a pattern match), else
    None. Only ints and plain strings: what is echoed must itself be valid JSON."""
    try:
        value = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        request_id = value.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
            return None
        if isinstance(request_id, str):
            return request_id.encode("utf-8", "replace").decode("utf-8")
        return request_id if -(2**63) <= request_id < 2**63 else None
    match = _ID_FIELD.search(body)
    if match is None:
        return None
    text = match.group(1)
    return text[1:-1].decode("utf-8", "replace") if text[:1] == b'"' else int(text)


def _too_big(size: int, limit: int) -> FrameError:
    return FrameError(
        "bad_request",
        f"frame of {size} bytes is over the limit of {limit} bytes",
        framing_lost=True,
    )
