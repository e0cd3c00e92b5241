"""One client connection of the addon's server: a reader thread that frames requests
and a writer thread that owns the socket's sends. Replies to requests without an id
leave in the order the requests came; at EOF (a client that shut down its write side)
the writer finishes only once every request read has been answered.

Standard library only; no bpy in this module.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from typing import Protocol

from .framing import FrameDecoder, FrameError
from .vocabulary import JSONObject

RECEIVE_CHUNK_BYTES = 256 * 1024
# Requests a connection may have waiting for the main thread before the server stops
# reading from it, so a client that floods without reading replies costs bounded memory.
MAX_IN_FLIGHT_PER_CONNECTION = 1024


class RequestHandler(Protocol):
    """What a connection needs of its server."""

    def handle_request(self, conn: Connection, request: JSONObject) -> None: ...
    def forget(self, conn: Connection) -> None: ...


def ok_reply(result: object) -> JSONObject:
    return {"status": "success", "result": result}


def error_reply(code: str, message: str) -> JSONObject:
    return {"status": "error", "code": code, "message": message}


class _OrderedReplies:
    """Replies to requests without an id leave in the order the requests came."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_slot = 0
        self._next_to_send = 0
        self._done: dict[int, bytes] = {}

    def reserve(self) -> int:
        with self._lock:
            slot, self._next_slot = self._next_slot, self._next_slot + 1
            return slot

    def complete(self, slot: int, data: bytes) -> list[bytes]:
        with self._lock:
            self._done[slot] = data
            ready = []
            while self._next_to_send in self._done:
                ready.append(self._done.pop(self._next_to_send))
                self._next_to_send += 1
            return ready


class Connection:
    def __init__(
        self, server: RequestHandler, sock: socket.socket, peer: str, max_frame_bytes: int
    ) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.decoder = FrameDecoder(max_frame_bytes)
        self.ordered = _OrderedReplies()
        self.subscribed: set[str] = set()
        self.event_seq = 0
        self.closed = threading.Event()
        self._outgoing: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT_PER_CONNECTION)
        # Requests read and not answered yet; at EOF (a client that shut down its write
        # side, like `nc -N`) the writer finishes only once they are all answered.
        self._unanswered = 0
        self._read_done = False
        self._count_lock = threading.Lock()

    # --- writing (the writer thread owns sock.sendall) ------------------------------

    def write_loop(self) -> None:
        while True:
            data = self._outgoing.get()
            if data is None:
                break
            chunks = [data]
            while True:  # batch what is already queued into one send
                try:
                    more = self._outgoing.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._outgoing.put(None)
                    break
                chunks.append(more)
            try:
                self.sock.sendall(b"".join(chunks))
            except OSError:
                break
        self.close()

    def send(self, message: JSONObject, request: JSONObject | None, slot: int | None) -> None:
        """Queue a reply. Runs on: any thread. `slot` orders replies to id-less requests."""
        if request is not None and "id" in request:
            message = {"id": request["id"], **message}
        data = self.decoder.encode(message)
        if slot is None:
            self._outgoing.put(data)
        else:
            for ready in self.ordered.complete(slot, data):
                self._outgoing.put(ready)

    def send_event(self, name: str, data: JSONObject) -> None:
        self.event_seq += 1
        self._outgoing.put(
            self.decoder.encode({"event": name, "seq": self.event_seq, "data": data})
        )

    def finish_writing(self) -> None:
        self._outgoing.put(None)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()

    # --- reading (the reader thread) ------------------------------------------------

    def read_loop(self) -> None:
        try:
            while not self.closed.is_set():
                try:
                    data = self.sock.recv(RECEIVE_CHUNK_BYTES)
                except OSError:
                    break
                if not data:
                    break
                self.decoder.feed(data)
                if not self._handle_frames():
                    break
        finally:
            with self._count_lock:
                self._read_done = True
                finish = self._unanswered == 0
            if finish:
                self.finish_writing()
            self.server.forget(self)

    def request_read(self) -> None:
        with self._count_lock:
            self._unanswered += 1

    def request_answered(self) -> None:
        """Runs on: any thread. The last answer after EOF lets the writer finish."""
        with self._count_lock:
            self._unanswered -= 1
            finish = self._read_done and self._unanswered == 0
        if finish:
            self.finish_writing()

    def _handle_frames(self) -> bool:
        """Handle every complete frame; False once framing is lost (then close)."""
        while True:
            try:
                frame = self.decoder.next_frame()
            except FrameError as error:
                self.send(error_reply(error.code, error.message), None, self.ordered.reserve())
                return False
            if frame is None:
                return True
            if isinstance(frame, FrameError):
                if frame.request_id is not None:  # answered with its id: no ordering slot
                    self.send(
                        error_reply(frame.code, frame.message), {"id": frame.request_id}, None
                    )
                else:
                    self.send(error_reply(frame.code, frame.message), None, self.ordered.reserve())
                continue
            assert isinstance(frame, dict)
            self.server.handle_request(self, frame)

    def acquire_slot_in_flight(self) -> None:
        self._in_flight.acquire()

    def release_slot_in_flight(self) -> None:
        self._in_flight.release()
