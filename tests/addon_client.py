"""A blocking test client for the addon port, in any of its three framings."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

NDJSON, BARE, LENGTH = "ndjson", "bare", "length"


def frame(message: Any, framing: str = NDJSON) -> bytes:
    body = json.dumps(message).encode() if not isinstance(message, bytes) else message
    if framing == LENGTH:
        return struct.pack(">I", len(body)) + body
    if framing == BARE:
        return body
    return body + b"\n"


class AddonClient:
    def __init__(self, port: int, framing: str = NDJSON, timeout_s: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.framing = framing
        self.buffer = b""
        self.decoder = json.JSONDecoder()
        self.events: list[dict[str, Any]] = []  # events that arrived while awaiting a reply

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> AddonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: Any) -> None:
        self.sock.sendall(frame(message, self.framing))

    def receive(self) -> dict[str, Any]:
        """One reply, read the way a client of that framing reads it."""
        while True:
            if self.framing == LENGTH and len(self.buffer) >= 4:
                (size,) = struct.unpack(">I", self.buffer[:4])
                if len(self.buffer) >= 4 + size:
                    body, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
                    return json.loads(body)
            elif self.framing != LENGTH:
                text = self.buffer.decode(errors="replace").lstrip()
                if text:
                    try:
                        value, end = self.decoder.raw_decode(text)
                    except ValueError:
                        pass
                    else:
                        self.buffer = text[end:].encode()
                        return value
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError(f"addon closed the connection (unread: {self.buffer[:200]!r})")
            self.buffer += data

    def call(self, kind: str, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Send one request and return its reply; events that come first are kept aside."""
        message: dict[str, Any] = {"type": kind, **extra}
        if params is not None:
            message["params"] = params
        self.send(message)
        while "event" in (reply := self.receive()):
            self.events.append(reply)
        return reply

    def ok(self, kind: str, params: dict[str, Any] | None = None) -> Any:
        reply = self.call(kind, params, id=kind)
        assert reply["status"] == "success", reply
        return reply["result"]
