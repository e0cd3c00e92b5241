"""Fan-out of daemon events (sessions, commands, heartbeats) to `watch` clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import trio

# Events a watcher may fall behind by before it misses some; a watcher that stops
# reading must never slow the daemon down, so it loses events instead (and is told).
WATCH_BUFFER_EVENTS = 256

WatchItem = tuple[str, bytes]
_encoder = msgspec.json.Encoder()


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

    def publish(self, event: str, data: object) -> None:
        if not self._subscribers:
            return
        payload = _encoder.encode(data)
        for channel, dropped in self._subscribers.items():
            try:
                if dropped:
                    channel.send_nowait(("dropped", _encoder.encode({"events": dropped})))
                    self._subscribers[channel] = dropped = 0
                channel.send_nowait((event, payload))
            except trio.WouldBlock:
                self._subscribers[channel] = dropped + 1
