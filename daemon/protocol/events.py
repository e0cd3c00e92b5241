"""Events that the sans-I/O connection classes hand to their I/O glue."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import RemoteProtocolError
from .messages import ControlRequest, LinkEvent, LinkFailure, LinkSuccess, RequestId


class NeedData:
    """next_event() has nothing complete yet: feed more bytes with receive_data()."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the stream (EOF) cleanly between messages."""


@dataclass(frozen=True, slots=True)
class UnreadableReply:
    """A reply to one of our requests that the daemon cannot read (the addon echoed a
    lone surrogate, say): that request failed, and the link goes on."""

    reason: str


class NoAnswer(Enum):
    """Why a request's sender got no answer from the addon."""

    LOST = "lost"  # the connection dropped before the answer came
    TIMED_OUT = "timed_out"  # no answer within the request timeout
    STOPPED_ANSWERING = "stopped_answering"  # Blender stopped answering heartbeats


# What the sender of a request learns: the addon's answer, or why there is none.
Outcome = LinkSuccess | LinkFailure | UnreadableReply | NoAnswer


@dataclass(slots=True)
class PendingRequest:
    """An entry of the link core's one table of requests sent and not yet answered."""

    type: str
    context: object  # the I/O glue's: who waits for the answer; opaque to the core
    late: bool = False  # its sender was answered already; an answer now is late


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response, paired with the request it answers. `pending` is None when nobody
    asked (the addon answered an id it was never sent, or one forgotten); when
    `pending.late` is set, its sender was answered already."""

    request_id: RequestId | None
    response: LinkSuccess | LinkFailure | UnreadableReply
    pending: PendingRequest | None


@dataclass(frozen=True, slots=True)
class EventReceived:
    """An unsolicited event. `missed` counts events lost before it (a `seq` gap)."""

    event: LinkEvent
    missed: int


@dataclass(frozen=True, slots=True)
class RequestReceived:
    request: ControlRequest


@dataclass(frozen=True, slots=True)
class BadMessage:
    """A frame that is not a valid message. Framing is intact: answer and go on."""

    error: RemoteProtocolError
    request_id: RequestId | None
    token: str | None = None


LinkConnectionEvent = ResponseReceived | EventReceived | ConnectionClosed | NeedData
ControlConnectionEvent = RequestReceived | BadMessage | ConnectionClosed | NeedData
