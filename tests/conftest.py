"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from daemon.main import Daemon

from .fake_addon import FakeAddon
from .helpers import WAIT_S, AsyncClient, running_daemon, token_of
from .postgres import postgres
from .programs import programs
from .test_web_browser import browser

__all__ = ["browser", "client", "daemon", "fake", "postgres", "programs"]


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeAddon:
    """A fake addon on a loopback port (`fake.port`)."""
    fake = FakeAddon()
    fake.port = await nursery.start(fake.serve_tcp)
    return fake


@pytest.fixture
async def daemon(tmp_path: Path, fake: FakeAddon) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path / "data", fake.port) as daemon:
        with trio.fail_after(WAIT_S):
            await daemon.link.wait_connected()
        yield daemon


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[AsyncClient]:
    assert daemon.control_port is not None
    client = await AsyncClient.connect(daemon.control_port, token_of(daemon))
    yield client
    await client.aclose()
