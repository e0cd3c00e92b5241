"""Who is on the other end of a proxy connection: one `client_id` per peer process.

blender-mcp clients reconnect after every error reply (and some after every request),
each time from a new ephemeral port, so a connection is no identity. The process that
owns the connecting socket is: the proxy looks it up in the kernel's socket table
(psutil, as `ss -tp` does) and names the client `proxy-<process name>-<pid>`, keeping
the process's start time in the key so a reused pid is another client. When the owner
cannot be read (a process of another user, a platform that hides it), the connection
gets an id of its own, as before.
"""

from __future__ import annotations

import re

import psutil
import structlog
import trio
from ulid import ULID

log = structlog.get_logger("proxy")
Address = tuple[str, int]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_KNOWN_PROCESSES = 4096  # past that the oldest are forgotten (they get a new id)


def owner_of(peer: Address, local: Address) -> tuple[int, str, float] | None:
    """(pid, name, start time) of the local process whose socket is `peer` connected to
    our `local`, or None. Blocking (it reads the whole socket table): run in a thread."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if (
                conn.pid
                and conn.laddr
                and conn.raddr
                and conn.laddr.port == peer[1]
                and conn.raddr.port == local[1]
            ):
                process = psutil.Process(conn.pid)
                return conn.pid, process.name(), process.create_time()
    except (psutil.Error, OSError):
        return None
    return None


class PeerNames:
    """client_ids by peer process, for the daemon's lifetime."""

    def __init__(self) -> None:
        self._by_process: dict[tuple[int, float], str] = {}

    async def client_id(self, peer: Address | None, local: Address | None) -> str:
        if peer is None or local is None:
            return _fresh()
        owner = await trio.to_thread.run_sync(owner_of, peer, local)
        if owner is None:
            return _fresh()
        pid, name, started = owner
        key = (pid, started)
        known = self._by_process.get(key)
        if known is None:
            known = f"proxy-{_UNSAFE.sub('_', name)[:40] or 'process'}-{pid}"
            if any(existing == known for existing in self._by_process.values()):
                known = f"{known}-{int(started)}"  # the pid was reused: another process
            if len(self._by_process) >= MAX_KNOWN_PROCESSES:
                del self._by_process[next(iter(self._by_process))]
            self._by_process[key] = known
            log.info("proxy_client", client_id=known, pid=pid, process=name)
        return known


def _fresh() -> str:
    return f"proxy-{ULID()}"
