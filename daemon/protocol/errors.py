"""One error type for both wire protocols, carrying the protocol's error code."""

from __future__ import annotations

from enum import StrEnum

import msgspec

# What decoding untrusted JSON can raise: msgspec raises RecursionError, not
# DecodeError, for input nested deeper than the interpreter's recursion limit (found
# by the live fuzz campaign: a line of ~15,000 "[" took the control listener down).
DECODE_ERRORS = (msgspec.DecodeError, RecursionError)


class ErrorCode(StrEnum):
    """Error codes on the wire. The first seven are PROTOCOL.md §1's; the rest are
    the control protocol's additions (documented in docs/protocol-notes.md)."""

    # The peer sent something that is not a message: bad JSON, not an object, too big.
    BAD_REQUEST = "bad_request"
    # A well-formed request for a command/op nobody implements.
    UNKNOWN_COMMAND = "unknown_command"
    # A session, object or file named in the request does not exist.
    NOT_FOUND = "not_found"
    # The params do not match the command's schema (wrong type, missing, malformed id).
    INVALID_PARAMS = "invalid_params"
    # The request is understood but not allowed (execute_code switched off).
    FORBIDDEN = "forbidden"
    # Blender's main thread did not get to the command in time.
    BUSY_TIMEOUT = "busy_timeout"
    # A bug on the answering side; it keeps serving.
    INTERNAL = "internal"
    # Control protocol: missing or wrong token.
    UNAUTHORIZED = "unauthorized"
    # Control protocol: no Blender is connected to serve the command.
    BLENDER_UNAVAILABLE = "blender_unavailable"
    # Control protocol: Blender did not answer within the request timeout.
    TIMEOUT = "timeout"
    # Control protocol: the client has too many requests in flight.
    BUSY = "busy"
    # Control protocol: the operation conflicts with the session's state (closed, open).
    CONFLICT = "conflict"
    # Control protocol: the data dir could not be written (disk full, read-only).
    STORAGE = "storage"


class ProtocolError(Exception):
    """An error with a wire code and a message that says what happened and what next.

    Do not raise this directly: raise `RemoteProtocolError` when the peer is at fault
    and `LocalProtocolError` when we are.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise RemoteProtocolError or LocalProtocolError, not ProtocolError")
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.message!r})"


class RemoteProtocolError(ProtocolError):
    """The peer misbehaved or asked for something impossible. Answer with `code`.

    `framing_lost` means the byte stream can no longer be trusted: answer, then close.
    """

    def __init__(self, code: ErrorCode, message: str, *, framing_lost: bool = False) -> None:
        super().__init__(code, message)
        self.framing_lost = framing_lost


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow: a bug on our side."""


class StorageError(ProtocolError):
    """Our own disk failed us: full, read-only, or a file in the data dir that is
    damaged or not what we wrote. Not the peer's fault; answer with `code` (`storage`
    for a write that failed, `internal` for damage) and keep serving."""
