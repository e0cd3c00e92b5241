"""What `watch` clients see: one Struct per event, and the fan-out to them.

An event goes out as `{"id": <the watch request's id>, "event": <name>, "data": ...}`;
the name of each Struct is in EVENT_NAMES. A watcher that stops reading must never
slow the daemon down, so it loses events instead, and is told how many (`dropped`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import trio

from .protocol.ops import BlenderLinkInfo, StatusResult

# Events a watcher may fall behind by before it misses some.
WATCH_BUFFER_EVENTS = 256


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    pass


class SessionOpened(_Event, frozen=True):
    session_id: str
    name: str | None


class SessionClosed(_Event, frozen=True):
    session_id: str
    path: str


class CommandDone(_Event, frozen=True):
    session_id: str
    seq: int
    type: str
    status: str
    duration_ms: float | None


class CommandLate(_Event, frozen=True):
    """An `unknown` command's real outcome arrived after its client was answered."""

    session_id: str
    seq: int
    type: str
    status: str


class SceneChanged(_Event, frozen=True):
    blender: str  # the Blender's endpoint
    data: msgspec.Raw
    missed: int  # scene_changed events lost before this one


class StorageFailed(_Event, frozen=True):
    session_id: str
    seq: int
    message: str


class BlenderRestarted(_Event, frozen=True):
    blender: str
    previous_instance: str
    instance: str
    sessions: list[str]  # open sessions whose scene was in the previous Blender


class SharedChanged(_Event, frozen=True):
    """Another daemon changed a session in the shared store (--store postgresql://)."""

    session_id: str
    daemon: str | None  # host:data dir of the daemon that changed it
    change: str  # journal (lines up to `line` recorded), saved, adopted
    line: int | None = None


class Dropped(_Event, frozen=True):
    events: int


# The status a watcher gets first (`watching`), and each Blender's heartbeat.
Event = (
    StatusResult | BlenderLinkInfo | SessionOpened | SessionClosed | CommandDone | CommandLate
    | SceneChanged | StorageFailed | BlenderRestarted | SharedChanged | Dropped
)  # fmt: skip
EVENT_NAMES: dict[type[msgspec.Struct], str] = {
    StatusResult: "watching",
    BlenderLinkInfo: "heartbeat",
    SessionOpened: "session_opened",
    SessionClosed: "session_closed",
    CommandDone: "command",
    CommandLate: "command_late",
    SceneChanged: "scene_changed",
    StorageFailed: "storage_failed",
    BlenderRestarted: "blender_restarted",
    SharedChanged: "shared_changed",
    Dropped: "dropped",
}

WatchItem = tuple[str, bytes]  # (event name, encoded data)
_encoder = msgspec.json.Encoder()


def encode_event(event: Event) -> WatchItem:
    return EVENT_NAMES[type(event)], _encoder.encode(event)


class Broadcaster:
    def __init__(self, buffer_events: int = WATCH_BUFFER_EVENTS) -> None:
        self._buffer_events = buffer_events
        self._subscribers: dict[trio.MemorySendChannel[WatchItem], int] = {}

    @contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[WatchItem]]:
        send, receive = trio.open_memory_channel[WatchItem](self._buffer_events)
        self._subscribers[send] = 0
        try:
            yield receive
        finally:
            del self._subscribers[send]
            send.close()

    @property
    def subscribed(self) -> bool:
        """Whether anyone watches: spares building events nobody will read."""
        return bool(self._subscribers)

    def publish(self, event: Event) -> None:
        if not self._subscribers:
            return
        item = encode_event(event)
        for channel, dropped in self._subscribers.items():
            try:
                if dropped:
                    channel.send_nowait(encode_event(Dropped(events=dropped)))
                    self._subscribers[channel] = dropped = 0
                channel.send_nowait(item)
            except trio.WouldBlock:
                self._subscribers[channel] = dropped + 1
