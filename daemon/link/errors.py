"""How the link words what went wrong: the errors a client gets for a command Blender
did not answer, and the reason a connection ended (from the exception group its
tasks raised)."""

from __future__ import annotations

from ..protocol import (
    ErrorCode,
    LocalProtocolError,
    NoAnswer,
    Outcome,
    RemoteProtocolError,
    UnreadableReply,
)
from ..protocol.messages import LinkFailure
from .channel import ForeignPeer
from .status import LinkConfig, LinkSnapshot


def outcome_error(
    endpoint: str, config: LinkConfig, snapshot: LinkSnapshot, type: str, outcome: Outcome
) -> RemoteProtocolError:
    """The client-facing error of an outcome that is not a success."""
    match outcome:
        case LinkFailure(code=code, message=message):
            return RemoteProtocolError(_known_code(code), message)
        case UnreadableReply(reason=reason):
            return RemoteProtocolError(
                ErrorCode.INTERNAL,
                f"Blender at {endpoint} answered {type!r} with a reply the daemon cannot read "
                f"({reason}); it may have run",
            )
        case NoAnswer.TIMED_OUT:
            return RemoteProtocolError(
                ErrorCode.TIMEOUT,
                f"Blender at {endpoint} did not answer {type!r} within "
                f"{config.request_timeout_s} s (main thread busy for "
                f"{snapshot.busy_for_ms:.0f} ms); it may still run it, and the session's "
                "record will show its outcome if it does",
            )
        case NoAnswer.STOPPED_ANSWERING:
            return RemoteProtocolError(
                ErrorCode.BLENDER_UNAVAILABLE,
                f"Blender at {endpoint} stopped answering (no heartbeat for "
                f"{config.heartbeat_timeout_s} s) before it answered {type!r}; it may still "
                "run it, and the session's record will show its outcome if it does",
            )
        case _:
            return unavailable(endpoint, snapshot.last_error, lost=True)


def unavailable(endpoint: str, last_error: str, *, lost: bool = False) -> RemoteProtocolError:
    if lost:
        message = (
            f"the connection to Blender at {endpoint} was lost before it answered; the "
            "command may or may not have run"
        )
    else:
        reason = f" ({last_error})" if last_error else ""
        message = (
            f"no Blender connected at {endpoint}{reason}; start one with the addon "
            "(run: blender-session blender)"
        )
    return RemoteProtocolError(ErrorCode.BLENDER_UNAVAILABLE, message)


def first_message(group: BaseExceptionGroup[BaseException]) -> str:
    """Why a connection ended, from what its tasks raised."""
    leaf = _leaves(group)[0]
    if isinstance(leaf, RemoteProtocolError | LocalProtocolError):
        return leaf.message
    return str(leaf) or type(leaf).__name__


def found_in(group: BaseExceptionGroup[BaseException]) -> str:
    """What answered on the port instead of our addon, if that is why it ended."""
    found = [leaf.found for leaf in _leaves(group) if isinstance(leaf, ForeignPeer)]
    return found[0] if found else ""


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for item in group.exceptions:
        leaves.extend(_leaves(item) if isinstance(item, BaseExceptionGroup) else [item])
    return leaves


def _known_code(code: str) -> ErrorCode:
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.INTERNAL
