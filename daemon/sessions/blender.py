"""What the session core needs of a Blender link, as a Protocol: `link.AddonLink` is
one, a test's fake is another. The core never imports the link package."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from ..protocol import ErrorCode, Outcome, RemoteProtocolError
from ..protocol.events import UnreadableReply
from ..protocol.messages import LinkFailure, LinkSuccess
from ..protocol.ops import BlenderLinkInfo

Answer = LinkSuccess | LinkFailure | UnreadableReply


class BlenderLink(Protocol):
    @property
    def endpoint(self) -> str: ...
    @property
    def connected(self) -> bool: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def addon_commands(self) -> list[str]: ...

    def info(self) -> BlenderLinkInfo: ...

    def submit(
        self,
        type: str,
        params: bytes,
        deliver: Callable[[Outcome], None],
        on_late: Callable[[Answer], None] | None = None,
    ) -> None: ...

    async def request(self, type: str, params: bytes | None = None) -> bytes: ...
    async def attach(self, session_id: str | None, name: str | None = None) -> None: ...
    def error_for(self, type: str, outcome: Outcome) -> RemoteProtocolError: ...
    def unavailable_error(self, *, lost: bool = False) -> RemoteProtocolError: ...


class Blenders:
    """The Blenders this daemon links to, by endpoint; the first is the default."""

    def __init__(self, links: Sequence[BlenderLink]) -> None:
        if not links:
            raise ValueError("a daemon needs at least one Blender link")
        self.default = links[0]
        self._by_endpoint = {link.endpoint: link for link in links}

    def __iter__(self) -> Iterator[BlenderLink]:
        return iter(self._by_endpoint.values())

    def pick(self, blender: str | None) -> BlenderLink:
        """The link to a Blender named as `host:port` or `port`; None: the default."""
        if blender is None:
            return self.default
        for endpoint, link in self._by_endpoint.items():
            if blender in (endpoint, str(link.port)):
                return link
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"no Blender {blender!r} is configured; this daemon knows "
            f"{sorted(self._by_endpoint)} (add one with another --addon-port)",
        )

    def find(self, host: str, port: int) -> BlenderLink:
        """The link a recorded session was bound to, or the default if it is gone."""
        return self._by_endpoint.get(f"{host}:{port}", self.default)
