"""The open sessions, by id, and how a reference (an id or a name) finds one."""

from __future__ import annotations

from collections.abc import Iterator

from ..protocol import ErrorCode, RemoteProtocolError
from ..store import is_session_id, parse_session_id
from .blender import BlenderLink
from .session import Session


class OpenSessions:
    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}  # in opening order

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._by_id

    def add(self, session: Session) -> None:
        self._by_id[session.session_id] = session

    def remove(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def get(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def find(self, ref: str) -> Session | None:
        """The open session with this id or (unique among open ones) this name."""
        session = self._by_id.get(ref)
        if session is not None or is_session_id(ref):
            return session
        named = [session for session in self._by_id.values() if session.name == ref]
        return named[0] if len(named) == 1 else None

    def bound_to(self, link: BlenderLink) -> list[Session]:
        return [session for session in self._by_id.values() if session.link is link]

    def newest(self) -> Session | None:
        """The most recently opened session that takes commands."""
        accepting = [s for s in self._by_id.values() if not s.closing and not s.detached]
        return accepting[-1] if accepting else None


def check_reference(ref: str) -> None:
    """Refuse a reference that can be neither an id nor a name, with the id format."""
    if not ref or len(ref) > 200 or not ref.isprintable() or "/" in ref or "\\" in ref:
        parse_session_id(ref)  # raises invalid_params with the id format


def not_found(ref: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.NOT_FOUND, f"no session with id or name {ref!r} (run: blender-session list)"
    )
