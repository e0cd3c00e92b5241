"""Session ids: made here, and checked here before any of them becomes a path."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from ..protocol.errors import ErrorCode, RemoteProtocolError
from ..protocol.limits import MAX_SESSION_NAME_CHARS

# ASCII only: `\d` would also match other scripts' digits, which must never reach a path.
SESSION_ID_PATTERN = r"^scene-[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$"
_SESSION_ID = re.compile(SESSION_ID_PATTERN, re.ASCII)
SESSION_ID_EXAMPLE = "scene-YYYYMMDD-HHMMSS-xxxxxxxx"


def new_session_id(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return f"scene-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def is_session_id(value: object) -> bool:
    return isinstance(value, str) and _SESSION_ID.fullmatch(value) is not None


def parse_session_id(value: object) -> str:
    """Return `value` if it is a well-formed session id, else raise invalid_params."""
    if is_session_id(value):
        assert isinstance(value, str)
        return value
    shown = value[:80] if isinstance(value, str) else value
    raise RemoteProtocolError(
        ErrorCode.INVALID_PARAMS,
        f"session id {shown!r} is not valid; expected {SESSION_ID_EXAMPLE} "
        "(run: blender-session list)",
    )


def check_session_name(value: str) -> str:
    if not value or len(value) > MAX_SESSION_NAME_CHARS or not value.isprintable():
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"session name {value[:80]!r} is not valid; use 1-{MAX_SESSION_NAME_CHARS} printable "
            "characters",
        )
    if is_session_id(value):
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"session name {value!r} looks like a session id; choose a name that does not",
        )
    return value
