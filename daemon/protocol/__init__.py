"""Wire protocols, sans-I/O: bytes in, typed events out. No sockets, trio or clocks.

- `framing`, `state`: lines with a size limit; the connection state machine.
- `link`, `control`: the connection cores of the addon link and the control port.
- `messages` (envelopes, handshake), `scene` (scene commands' params and results),
  `ops` (control ops' params and results), `commands` (the table of scene commands).
- `errors`, `limits`, `json_checks`: error codes, every limit, checks of stored JSON.
"""

from .commands import COMMANDS, check_command
from .control import ControlClientConnection, ControlServerConnection
from .errors import (
    DECODE_ERRORS,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    StorageError,
)
from .events import (
    NEED_DATA,
    BadMessage,
    ConnectionClosed,
    EventReceived,
    NeedData,
    NoAnswer,
    Outcome,
    PendingRequest,
    RequestReceived,
    ResponseReceived,
    UnreadableReply,
)
from .framing import DEFAULT_MAX_FRAME_BYTES, LineBuffer, LineReader
from .json_checks import check_json
from .link import LinkConnection
from .state import ConnectionState

__all__ = [
    "COMMANDS",
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
    "LineReader",
    "LinkConnection",
    "LocalProtocolError",
    "NeedData",
    "NoAnswer",
    "Outcome",
    "PendingRequest",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestReceived",
    "ResponseReceived",
    "StorageError",
    "UnreadableReply",
    "check_command",
    "check_json",
]
