"""The connection state machine shared by the link and control cores.

Rule: everything that changes a connection's state goes through `transition`; an
input missing from the table is a protocol error, never silently ignored.
"""

from __future__ import annotations

from enum import Enum, auto

from .errors import ErrorCode, LocalProtocolError


class ConnectionState(Enum):
    OPEN = auto()  # exchanging messages
    CLOSED = auto()  # the peer sent EOF between messages
    ERROR = auto()  # framing was lost; every later call raises


class Input(Enum):
    MESSAGE = auto()
    EOF = auto()
    FRAMING_LOST = auto()


TRANSITIONS: dict[ConnectionState, dict[Input, ConnectionState]] = {
    ConnectionState.OPEN: {
        Input.MESSAGE: ConnectionState.OPEN,
        Input.EOF: ConnectionState.CLOSED,
        Input.FRAMING_LOST: ConnectionState.ERROR,
    },
    ConnectionState.CLOSED: {Input.EOF: ConnectionState.CLOSED},
    ConnectionState.ERROR: {},
}


def transition(state: ConnectionState, what: Input) -> ConnectionState:
    try:
        return TRANSITIONS[state][what]
    except KeyError:
        raise LocalProtocolError(
            ErrorCode.INTERNAL,
            f"connection in state {state.name} cannot take {what.name}; "
            "it failed earlier, so open a new connection",
        ) from None
