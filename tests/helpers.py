"""Shared test helpers: an async control client, a daemon in-process on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import trio

from daemon.clients.aclient import AsyncControlClient
from daemon.config import DaemonConfig
from daemon.main import Daemon
from daemon.store import DataDir, SessionStore


class AsyncClient(AsyncControlClient):
    """The daemon's async client, with assertions for tests."""

    @classmethod
    async def connect(  # type: ignore[override]
        cls, port: int, token: str, client_id: str = "01JTESTCLIENT000000000000"
    ) -> AsyncClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port), token, client_id)

    async def ok(self, op: str, params: Any = None) -> Any:
        reply = await self.call(op, params)
        assert reply.ok, reply.error
        return msgspec.json.decode(reply.result)

    async def error(self, op: str, params: Any = None) -> tuple[str, str]:
        reply = await self.call(op, params)
        assert reply.ok is False and reply.error is not None, reply
        return reply.error.code, reply.error.message


@asynccontextmanager
async def running_daemon(data_dir: Path, addon_port: int, **config: Any) -> AsyncIterator[Daemon]:
    settings = {
        "heartbeat_interval_s": 0.05,
        "heartbeat_timeout_s": 1.0,
        "cleanup_interval_s": None,
        **config,
    }
    daemon = Daemon(
        DaemonConfig(data_dir=data_dir, addon_port=addon_port, control_port=0, **settings)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        yield daemon
        nursery.cancel_scope.cancel()


def token_of(daemon: Daemon) -> str:
    return (daemon.data_dir.path / "control.token").read_text()


async def ready_client(daemon: Daemon, client_id: str = "01JTESTCLIENT000000000000") -> AsyncClient:
    """A client of `daemon`, once the daemon has its Blender and has recovered what a
    crash left open (bounded waits)."""
    with trio.fail_after(10):
        await daemon.link.wait_connected()
        await daemon.service.ready.wait()
    assert daemon.control_port is not None
    return await AsyncClient.connect(daemon.control_port, token_of(daemon), client_id)


def local_store(data_dir: Path, *, journal_fsync: bool = False) -> SessionStore:
    """A store on a prepared data dir, as the daemon makes one (without its lock)."""
    root = DataDir(data_dir)
    root.check_and_create()
    store = SessionStore(root, journal_fsync=journal_fsync)
    store.prepare()
    return store


def create_cube(session_id: str, name: str) -> dict[str, Any]:
    """session.command params that make a cube named `name`."""
    return {"session_id": session_id, "type": "create_object",
            "params": {"kind": "cube", "name": name}}  # fmt: skip


def recorded_commands(closed: dict[str, Any]) -> list[dict[str, Any]]:
    """The commands of the record a session.close reply points to."""
    commands: list[dict[str, Any]] = msgspec.json.decode(Path(closed["path"]).read_bytes())["data"][
        "commands"
    ]
    return commands


# The bound for every wait in the daemon tests (trio clock; real sockets on loopback).
WAIT_S = 10


async def raw_exchange(port: int, data: bytes) -> list[Any]:
    """Send raw bytes while reading replies until the daemon closes the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = bytearray()

    async def send() -> None:
        try:
            await stream.send_all(data)
            await stream.send_eof()
        except trio.BrokenResourceError:
            pass  # the daemon closed on us mid-send: what it said is what matters

    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                while chunk := await stream.receive_some(65536):
                    received.extend(chunk)
            except trio.BrokenResourceError:
                pass
    await stream.aclose()
    return [msgspec.json.decode(line) for line in bytes(received).splitlines()]


def object_records(state: Any) -> dict[str, tuple[Any, ...]]:
    """What a scene must come back as: names, types, kinds, transforms to 1e-5,
    materials, parents (by object name)."""
    return {
        o["name"]: (
            o["type"],
            o["data_kind"],
            [round(v, 5) for v in o["location"]],
            [round(v, 5) for v in o["rotation"]],
            [round(v, 5) for v in o["scale"]],
            o["materials"],
            o["parent"],
        )
        for o in state["objects"]
    }
