"""Blocking control-port clients for the fault suite: a pipelined stream of scene
commands, and a client that sends and never reads."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Request = Callable[[int], dict[str, Any]]


@dataclass
class Stream:
    """One connection sending `total` requests with up to `window` unanswered.
    `replies` holds every reply by request id; the stream ends at `total` replies or
    when the daemon goes away (`ended_by`)."""

    port: int
    token: str
    request: Request  # request number -> the `params` of a session.command
    total: int
    window: int = 16
    client_id: str | None = None
    first_id: int = 0  # request ids are first_id + number, so streams can be told apart
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)
    duplicates: list[int] = field(default_factory=list)
    ended_by: BaseException | None = None
    on_reply: Callable[[], None] = lambda: None

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=120) as sock:
                self._run(sock)
        except OSError as error:  # the daemon died: what was not answered was not acked
            self.ended_by = error

    def _run(self, sock: socket.socket) -> None:
        reader = sock.makefile("rb")
        sent = 0
        while len(self.replies) + len(self.duplicates) < self.total:
            burst = []
            while sent < self.total and sent - len(self.replies) < self.window:
                burst.append(self._encode(sent))
                sent += 1
            if burst:
                sock.sendall(b"".join(burst))
            line = reader.readline()
            if not line:
                self.ended_by = ConnectionError("the daemon closed the connection")
                return
            reply = json.loads(line)
            number = reply["id"] - self.first_id
            if number in self.replies:
                self.duplicates.append(number)
            self.replies[number] = reply
            self.on_reply()

    def _encode(self, number: int) -> bytes:
        message = {
            "id": self.first_id + number,
            "op": "session.command",
            "token": self.token,
            "params": self.request(number),
        }
        if self.client_id is not None:
            message["client_id"] = self.client_id
        return json.dumps(message).encode() + b"\n"


def run_streams(streams: list[Stream]) -> list[threading.Thread]:
    threads = [threading.Thread(target=stream.run, daemon=True) for stream in streams]
    for thread in threads:
        thread.start()
    return threads


class Counter:
    """A thread-safe count that sets an event once it reaches `target`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.value = 0
        self.reached = threading.Event()
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1
            if self.value >= self.target:
                self.reached.set()
