"""Events that the sans-I/O connection classes hand to their I/O glue."""

from __future__ import annotations

from dataclasses import dataclass

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
class ResponseReceived:
    """A response to a request. `request_type` is None when nobody waits for it any
    more (it came after the request timed out), so the glue can drop it."""

    request_id: RequestId | None
    response: LinkSuccess | LinkFailure
    request_type: str | None


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
