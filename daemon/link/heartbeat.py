"""The heartbeat: one `ping` in flight at a time, answered on the addon's I/O thread
even while Blender's main thread is busy.

Dead means no pong within the timeout of the last one. The connection is kept then
(a stopped or frozen Blender may come back), no new ping is sent, and the link waits
for the outstanding one: when it comes, the link is alive again.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import structlog
import trio

from ..protocol import DECODE_ERRORS, NoAnswer, Outcome
from ..protocol.messages import LinkSuccess, PongResult
from .channel import Channel

log = structlog.get_logger("link")
_pong_decoder = msgspec.json.Decoder(PongResult)


async def heartbeat_loop(
    channel: Channel,
    interval_s: float,
    timeout_s: float,
    on_pong: Callable[[PongResult | None, float], None],
    on_silence: Callable[[], None],
) -> None:
    """Ping forever. `on_pong(pong, rtt_ms)` at each answer (pong None: the addon
    answered, but not with a pong we can read: it is alive all the same);
    `on_silence()` once the timeout passes without one."""
    last_pong_at = trio.current_time()
    while True:
        sent_at = trio.current_time()
        outcome: list[Outcome] = []
        answered = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ping, channel, outcome, answered)
            with trio.move_on_at(last_pong_at + timeout_s) as silence:
                await answered.wait()
            if silence.cancelled_caught:
                on_silence()
                await answered.wait()  # the same ping: no new one while Blender is silent
        if isinstance(outcome[0], NoAnswer):
            return  # the connection is over; the link's supervisor takes it from here
        last_pong_at = trio.current_time()
        on_pong(_pong(outcome[0]), (last_pong_at - sent_at) * 1000)
        await trio.sleep_until(sent_at + interval_s)


async def _ping(channel: Channel, outcome: list[Outcome], answered: trio.Event) -> None:
    outcome.append(await channel.call("ping"))
    answered.set()


def _pong(outcome: Outcome) -> PongResult | None:
    if isinstance(outcome, LinkSuccess):
        try:
            return _pong_decoder.decode(outcome.result)
        except DECODE_ERRORS as error:
            log.warning("pong_unreadable", reason=str(error))
    return None
