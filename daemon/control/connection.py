"""One control connection's outgoing side: an outbox, a single writer, and the `room`
that bounds what the client can make the daemon hold.

Every message to the client holds one unit of `room` from when its request is read
until the writer has sent it; the outbox itself is unbounded so a command's reply,
delivered from the link's reader, never waits. A client that stops reading stalls
only itself: once its room is used up, the server stops reading its requests.
"""

from __future__ import annotations

import contextlib
import math

import trio

from ..protocol import ControlServerConnection

# Requests in flight plus replies not yet written, per connection, before the server
# stops reading from it: enough for deep pipelining, bounded memory for a flood.
MAX_UNWRITTEN_PER_CONNECTION = 256


class ClientConnection:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = ControlServerConnection()
        self.key = f"connection-{id(self)}"  # whose requests count against one limit
        self.outbox, self._outbox_receive = trio.open_memory_channel[bytes](math.inf)
        self.room = trio.Semaphore(MAX_UNWRITTEN_PER_CONNECTION)
        self.watches: set[trio.CancelScope] = set()
        self.commands_in_flight = 0
        self._commands_done = trio.Event()
        self.lingering = False  # framing was lost: close gently so the error arrives
        # Set once the reader had to stop reading for want of room: the client is not
        # reading its replies (for status and tests).
        self.stalled = trio.Event()

    def try_take_room(self) -> bool:
        """Take room now if there is some (no checkpoint)."""
        try:
            self.room.acquire_nowait()
        except trio.WouldBlock:
            return False
        return True

    async def take_room(self) -> None:
        if not self.try_take_room():
            self.stalled.set()
            await self.room.acquire()

    def queue(self, data: bytes) -> None:
        """Queue a message whose room is already taken."""
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self.outbox.send_nowait(data)  # unless the client is gone

    async def send(self, data: bytes) -> None:
        await self.take_room()
        self.queue(data)

    def command_sent(self) -> None:
        self.commands_in_flight += 1

    def command_answered(self, data: bytes) -> None:
        """Queue a command's reply (called from the link's reader, or at once). If the
        client left meanwhile, the outcome is in the journal all the same."""
        self.commands_in_flight -= 1
        if self.commands_in_flight == 0:
            self._commands_done.set()
        self.queue(data)

    async def commands_idle(self) -> None:
        """Wait for the replies of commands still in flight."""
        while self.commands_in_flight:
            self._commands_done = trio.Event()
            await self._commands_done.wait()

    async def write_loop(self) -> None:
        """The connection's only writer; sends queued messages in batches."""
        async with self._outbox_receive:
            async for first in self._outbox_receive:
                batch = [first]
                while True:
                    try:
                        batch.append(self._outbox_receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self.stream.send_all(b"".join(batch))
                for _ in batch:
                    self.room.release()
