"""One connection to the addon: the sans-I/O core, the stream, and the tasks that
serve it (the reader, the only writer, and the expiry of requests).

Theory of operation. Every request sent has one entry in the core's pending table,
whose context is a `Waiter`. Exactly one outcome is delivered to each waiter, once:
the addon's answer, or why there is none (LOST: the connection dropped; TIMED_OUT:
not answered within the request timeout; STOPPED_ANSWERING: Blender stopped
answering heartbeats). After TIMED_OUT or STOPPED_ANSWERING the entry stays, marked
late; an answer that arrives then goes to the waiter's `on_late`, so a command that
Blender ran after all is recorded with its real outcome. Delivery runs in the reader
task (or the expiry task) and never blocks; a waiter's bug is logged, never raised.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import structlog
import trio

from ..protocol import (
    NEED_DATA,
    ConnectionClosed,
    ConnectionState,
    EventReceived,
    LinkConnection,
    NoAnswer,
    Outcome,
    RemoteProtocolError,
    ResponseReceived,
    UnreadableReply,
)
from ..protocol.identify import CLOSES_EACH_REQUEST, OTHER_PROTOCOL, advice, identify_unterminated
from ..protocol.messages import LinkFailure, LinkSuccess, RequestId

log = structlog.get_logger("link")

# Read size for the link socket: big enough that a 1.6 MB snapshot takes few reads.
RECEIVE_CHUNK_BYTES = 256 * 1024
_encoder = msgspec.json.Encoder()

Connect = Callable[[str, int], Awaitable[trio.abc.Stream]]
Answer = LinkSuccess | LinkFailure | UnreadableReply
Deliver = Callable[[Outcome], None]
OnLate = Callable[[Answer], None]


@dataclass(slots=True)
class Waiter:
    type: str
    deliver: Deliver
    deadline: float  # trio time; math.inf: never expires (the link's own requests)
    on_late: OnLate | None = None


class LinkLost(Exception):
    """The connection is over (closed, broken, or not our addon)."""


class ForeignPeer(LinkLost):
    """Something other than this project's addon answers on the port."""

    def __init__(self, found: str, endpoint: str) -> None:
        super().__init__(advice(found, endpoint))
        self.found = found


class Channel:
    def __init__(
        self,
        stream: trio.abc.Stream,
        endpoint: str,
        on_event: Callable[[EventReceived], None],
        handling: contextlib.AbstractContextManager[None] | None = None,
    ) -> None:
        self.stream = stream
        self.endpoint = endpoint
        self.core = LinkConnection()
        self.said_hello = False
        self._on_event = on_event
        # Entered around the delivery of each read's answers (a reusable context).
        self._handling = handling or contextlib.nullcontext()
        self._outgoing = bytearray()  # requests waiting for the writer: sent together
        self._outgoing_ready = trio.Event()
        self._pending_added = trio.Event()

    @property
    def open(self) -> bool:
        """Requests can still be sent: the core has not failed (framing lost) and the
        connection has not ended, though the supervisor may not have torn it down yet."""
        return self.core.state is ConnectionState.OPEN

    # --- sending --------------------------------------------------------------------

    def send(self, type: str, params: msgspec.Struct | bytes | None, waiter: Waiter) -> RequestId:
        """Queue a request for the writer. Raises LocalProtocolError once the core failed."""
        body = _encoder.encode(params) if isinstance(params, msgspec.Struct) else params
        request_id, data = self.core.send_request(type, body, waiter)
        if waiter.deadline != math.inf:
            self._pending_added.set()
        self._outgoing += data
        self._outgoing_ready.set()
        return request_id

    async def call(self, type: str, params: msgspec.Struct | bytes | None = None) -> Outcome:
        """Send and wait for the outcome (no deadline: callers scope their own). A caller
        cancelled while waiting withdraws the request, so a late answer is dropped."""
        done = trio.Event()
        box: list[Outcome] = []

        def deliver(outcome: Outcome) -> None:
            box.append(outcome)
            done.set()

        request_id = self.send(type, params, Waiter(type, deliver, math.inf))
        try:
            await done.wait()
        finally:
            if not box:
                self.core.forget(request_id)
        return box[0]

    async def write_loop(self) -> None:
        """The connection's only writer: sends whatever queued up since the last send."""
        while True:
            await self._outgoing_ready.wait()
            self._outgoing_ready = trio.Event()
            data = bytes(self._outgoing)
            self._outgoing.clear()
            await self.stream.send_all(data)

    # --- answers --------------------------------------------------------------------

    async def read_loop(self) -> None:
        """Read until the connection ends; raises LinkLost (or ForeignPeer before hello)."""
        received_any = False
        while True:
            data = await self.stream.receive_some(RECEIVE_CHUNK_BYTES)
            self.core.receive_data(data)
            received_any = received_any or bool(data)
            with self._handling:
                self._deliver_events(ended=not data, received_any=received_any)
            if not self.said_hello:
                # Every complete line is handled; a JSON object left over with no newline
                # is how the older blender-mcp addon answers (the Blender Lab addon: one
                # ended by a NUL byte).
                found = identify_unterminated(self.core.unterminated_tail())
                if found:
                    raise ForeignPeer(found, self.endpoint)

    def _deliver_events(self, *, ended: bool, received_any: bool) -> None:
        """Deliver every complete message one read brought in. Raises LinkLost."""
        while (event := self._next_event(ended=ended)) is not NEED_DATA:
            match event:
                case ResponseReceived():
                    self._answered(event)
                case EventReceived():
                    self._on_event(event)
                case ConnectionClosed():
                    if not self.said_hello:
                        found = identify_unterminated(self.core.unterminated_tail())
                        if found:
                            raise ForeignPeer(found, self.endpoint)
                        raise ForeignPeer(
                            CLOSES_EACH_REQUEST
                            if received_any
                            else f"{CLOSES_EACH_REQUEST} (without answering)",
                            self.endpoint,
                        )
                    raise LinkLost(f"{self.endpoint} closed the connection")

    def _next_event(self, *, ended: bool) -> object:
        try:
            return self.core.next_event()
        except RemoteProtocolError as error:
            if self.said_hello:
                raise LinkLost(f"{self.endpoint}: {error.message}") from None
            # Not our addon: it closed mid-reply, or sent something that is not NDJSON.
            found = identify_unterminated(self.core.unterminated_tail())
            if found:
                raise ForeignPeer(found, self.endpoint) from None
            raise ForeignPeer(
                CLOSES_EACH_REQUEST if ended else OTHER_PROTOCOL, self.endpoint
            ) from None

    def _answered(self, event: ResponseReceived) -> None:
        pending = event.pending
        if pending is None or not isinstance(pending.context, Waiter):
            if event.request_id is None and isinstance(event.response, LinkFailure):
                if not self.said_hello:
                    raise ForeignPeer(OTHER_PROTOCOL, self.endpoint)
                # The addon could not read one of our requests well enough to say which:
                # nothing can be paired with it, so the link starts again (every request
                # in flight is then answered LOST, and recorded as unknown).
                raise LinkLost(
                    f"{self.endpoint} could not read a request of ours: "
                    f"{event.response.code}: {event.response.message}"
                )
            return  # an answer nobody waits for (withdrawn, or dropped as too late)
        waiter = pending.context
        if not pending.late:
            _deliver(waiter, event.response)
        elif waiter.on_late is not None:
            try:
                waiter.on_late(event.response)
            except Exception:
                log.exception("late_delivery_failed", type=waiter.type)

    # --- no answers -----------------------------------------------------------------

    async def expire_loop(self) -> None:
        """Answer requests that outlived their deadline with TIMED_OUT, oldest first;
        they stay in the table, late."""
        while True:
            oldest = self._oldest_waiting()
            if oldest is None:
                await self._pending_added.wait()
                self._pending_added = trio.Event()
                continue
            request_id, waiter = oldest
            await trio.sleep_until(waiter.deadline)
            entry = self.core.pending_requests.get(request_id)
            if entry is not None and entry.context is waiter and not entry.late:
                self.core.expire(request_id)
                _deliver(waiter, NoAnswer.TIMED_OUT)

    def _oldest_waiting(self) -> tuple[RequestId, Waiter] | None:
        """The waiting request with the earliest deadline: deadlines grow in send order,
        so it is the first one that has a deadline and is not late yet."""
        for request_id, entry in self.core.pending_requests.items():
            waiter = entry.context
            if not entry.late and isinstance(waiter, Waiter) and waiter.deadline != math.inf:
                return request_id, waiter
        return None

    def stop_answering(self) -> None:
        """Blender stopped answering: every waiting sender learns it now; their requests
        stay, late, in case Blender comes back and answers."""
        waiting = [
            (request_id, entry.context)
            for request_id, entry in self.core.pending_requests.items()
            if not entry.late and isinstance(entry.context, Waiter)
            and entry.context.type != "ping"  # the heartbeat keeps waiting for its pong
        ]  # fmt: skip
        for request_id, waiter in waiting:
            self.core.expire(request_id)
            _deliver(waiter, NoAnswer.STOPPED_ANSWERING)

    def fail_all(self) -> None:
        """The connection is gone: every waiting sender gets LOST; late ones stay unknown."""
        for entry in self.core.take_all_pending():
            if not entry.late and isinstance(entry.context, Waiter):
                _deliver(entry.context, NoAnswer.LOST)


def _deliver(waiter: Waiter, outcome: Outcome) -> None:
    """Hand an outcome to its sender; a sender's bug must not take the link down."""
    try:
        waiter.deliver(outcome)
    except Exception:
        log.exception("delivery_failed", type=waiter.type)
