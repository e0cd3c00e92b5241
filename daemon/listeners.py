"""Loopback listeners with a cap on open connections, for the control port and the
proxy. Over the cap a new connection is told why in one line and closed at once (so
the kernel's backlog does not fill and lock everyone out), and the log says so at
most once per interval, with a count."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import structlog
import trio

from .config import LOOPBACK_HOSTS

log = structlog.get_logger("listeners")
# How often the log may say that connections are being refused.
REFUSAL_LOG_INTERVAL_S = 10.0

Handler = Callable[[trio.SocketStream], Awaitable[None]]


class CappedListener:
    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        host: str,
        port: int,
        max_connections: int,
        refusal: Callable[[int], bytes],
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"{name} host {host!r} is not loopback; it only listens on 127.0.0.1 or ::1"
            )
        self.name = name
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.open_connections = 0
        self._handler = handler
        self._refusal = refusal  # the line a refused connection gets, given the cap
        self._refused_since_log = 0
        self._logged_at: float | None = None

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve; `started()` reports the bound port (useful with port 0)."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        port = int(listeners[0].socket.getsockname()[1])
        log.info("listening", listener=self.name, host=self.host, port=port)
        task_status.started(port)
        await trio.serve_listeners(self._admit, listeners)

    async def _admit(self, stream: trio.SocketStream) -> None:
        if self.open_connections >= self.max_connections:
            await self._refuse(stream)
            return
        self.open_connections += 1
        try:
            await self._handler(stream)
        finally:
            self.open_connections -= 1

    async def _refuse(self, stream: trio.SocketStream) -> None:
        self._refused_since_log += 1
        now = trio.current_time()
        if self._logged_at is None or now - self._logged_at >= REFUSAL_LOG_INTERVAL_S:
            log.warning(
                "connections_refused",
                listener=self.name,
                max_connections=self.max_connections,
                refused=self._refused_since_log,
            )
            self._logged_at, self._refused_since_log = now, 0
        with (
            trio.move_on_after(1),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await stream.send_all(self._refusal(self.max_connections))
        await trio.aclose_forcefully(stream)
