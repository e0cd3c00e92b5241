"""Wire protocols, sans-I/O: bytes in, typed events out. No sockets, trio or clocks."""

from .control import ControlClientConnection, ControlServerConnection
from .errors import DECODE_ERRORS, ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import (
    NEED_DATA,
    BadMessage,
    ConnectionClosed,
    EventReceived,
    NeedData,
    RequestReceived,
    ResponseReceived,
)
from .framing import DEFAULT_MAX_FRAME_BYTES, LineBuffer
from .link import LinkConnection
from .state import ConnectionState

__all__ = [
    "DECODE_ERRORS",
    "DEFAULT_MAX_FRAME_BYTES",
    "NEED_DATA",
    "BadMessage",
    "ConnectionClosed",
    "ConnectionState",
    "ControlClientConnection",
    "ControlServerConnection",
    "ErrorCode",
    "EventReceived",
    "LineBuffer",
    "LinkConnection",
    "LocalProtocolError",
    "NeedData",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestReceived",
    "ResponseReceived",
]
