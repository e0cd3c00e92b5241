"""The heartbeat: one `ping` in flight at a time, answered on the addon's I/O thread
even while Blender's main thread is busy.

Dead means no pong within the timeout of the last one. The connection is kept then (a
stopped or frozen Blender may come back, and the answers it owes reach the records):
the unanswered ping is withdrawn and a fresh one sent every timeout period, so a peer
that dropped or misanswered one ping cannot keep the link silent for good; the first
pong after that makes it alive again.
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
    silent = False
    while True:
        sent_at = trio.current_time()
        deadline = sent_at + timeout_s if silent else last_pong_at + timeout_s
        with trio.move_on_at(deadline):
            outcome = await channel.call("ping")  # cancelled: the ping is withdrawn
            if isinstance(outcome, NoAnswer):
                return  # the connection is over; the link's supervisor takes it from here
            last_pong_at = trio.current_time()
            silent = False
            on_pong(_pong(outcome), (last_pong_at - sent_at) * 1000)
            await trio.sleep_until(sent_at + interval_s)
            continue
        if not silent:
            silent = True
            on_silence()


def _pong(outcome: Outcome) -> PongResult | None:
    if isinstance(outcome, LinkSuccess):
        try:
            return _pong_decoder.decode(outcome.result)
        except DECODE_ERRORS as error:
            log.warning("pong_unreadable", reason=str(error))
    return None
