"""Scale (issue 13) through the daemon's port: the index of sessions is derived (a
deleted or damaged one is rebuilt from the records and lists the same), `list` pages
through every session with its cursor, a history larger than one message is read in
pages (and the CLI prints it whole), and a reader of a huge history does not starve
the heartbeat or another client. The Blender side is the fake addon; the bench's
`history` case measures the same against a real Blender."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import trio

from .fake_addon import FakeAddon
from .helpers import WAIT_S, AsyncClient, local_store, ready_client, running_daemon
from .records import session_id_for, write_closed

BIN = Path(sys.executable).parent


def make_sessions(data_dir: Path, count: int, commands: int = 3, **extra: Any) -> list[str]:
    local_store(data_dir)  # a data dir as the daemon makes one
    now = time.time() - count
    ids = [session_id_for(n) for n in range(count)]
    for n, session_id in enumerate(ids):
        write_closed(data_dir / "sessions", session_id, f"bench-{n}", commands, now + n, **extra)
    return ids


async def every_page(client: AsyncClient, limit: int, **params: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = await client.ok(
            "session.list", {"limit": limit, **({"cursor": cursor} if cursor else {}), **params}
        )
        ids += [s["session_id"] for s in page["sessions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


async def test_a_deleted_or_damaged_index_is_rebuilt_and_lists_the_same(
    tmp_path: Path, fake: FakeAddon
) -> None:
    data_dir = tmp_path / "data"
    ids = make_sessions(data_dir, 40)
    async with running_daemon(data_dir, fake.port) as daemon:
        client = await ready_client(daemon)
        listed = await every_page(client, 7)
        named = await every_page(client, 5, name="bench-3")
        stats = await client.ok("session.stats")
    assert listed == ids[::-1]  # newest first, every one once
    assert sorted(named) == sorted(ids[n] for n in [3, *range(30, 40)])
    index = data_dir / "index.sqlite3"
    assert index.exists()
    for damage in ("delete", "garbage"):
        for path in data_dir.glob("index.sqlite3*"):
            path.unlink()
        if damage == "garbage":
            index.write_bytes(b"this is not a database" * 100)
        async with running_daemon(data_dir, fake.port) as daemon:
            client = await ready_client(daemon)
            assert await every_page(client, 7) == listed, damage
            assert await client.ok("session.stats") == stats
            shown = await client.ok("session.show", {"session_id": "bench-17", "limit": 1})
            assert shown["session_id"] == ids[17]


async def test_a_history_larger_than_a_message_is_read_in_pages_and_by_the_cli(
    tmp_path: Path, fake: FakeAddon
) -> None:
    data_dir = tmp_path / "data"
    (session_id,) = make_sessions(data_dir, 1, commands=3000, result_bytes=6000)
    size = (data_dir / "sessions" / f"{session_id}.json").stat().st_size
    assert size > 17 * 2**20  # more than one message may hold (16 MiB)
    async with running_daemon(data_dir, fake.port) as daemon:
        await ready_client(daemon)
        command = [str(BIN / "blender-session"), "--data-dir", str(data_dir), "--json", "show",
                   session_id]  # fmt: skip
        with trio.fail_after(120):
            done = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
        record = json.loads(done.stdout)
        assert [c["seq"] for c in record["data"]["commands"]] == list(range(1, 3001))
        assert record["data"]["commands"][-1]["result"]["note"] == "x" * 6000
        with trio.fail_after(120):
            text = await trio.run_process(
                [c for c in command if c != "--json"], capture_stdout=True, capture_stderr=True
            )
        assert text.stdout.count(b"transform_object") == 3000 and not text.stderr


async def test_two_readers_of_a_huge_history_starve_neither_the_heartbeat_nor_a_client(
    tmp_path: Path, fake: FakeAddon
) -> None:
    """Two clients read a 20 MB history page after page, twice over, while a third
    sends commands one at a time: the heartbeat (every 50 ms, dead after 0.5 s)
    never misses and every command succeeds."""
    data_dir = tmp_path / "data"
    (huge,) = make_sessions(data_dir, 1, commands=20_000, result_bytes=800)
    async with running_daemon(data_dir, fake.port, heartbeat_timeout_s=0.5) as daemon:
        client = await ready_client(daemon)
        opened = await client.ok("session.open", {"name": "beside"})
        readers_done = 0
        pages_read = 0

        statuses: list[str] = []
        changed = daemon.service.link_changed

        def record_status(link: Any) -> None:  # every change of the link's status
            statuses.append(link.info().status)
            changed(link)

        daemon.service.link_changed = record_status  # type: ignore[method-assign]

        async def reader(client_id: str) -> None:
            nonlocal readers_done, pages_read
            own = await ready_client(daemon, client_id)
            for _ in range(2):
                after: int | None = 0
                while after is not None:
                    page = await own.ok(
                        "session.show", {"session_id": huge, "after_seq": after, "limit": 5000}
                    )
                    pages_read += 1
                    after = page["page"]["next_after_seq"]
            readers_done += 1

        commands = 0
        with trio.fail_after(WAIT_S * 6):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader, "01JREADER0000000000000000A")
                nursery.start_soon(reader, "01JREADER0000000000000000B")
                while readers_done < 2:
                    done = await client.ok(
                        "session.command",
                        {"session_id": opened["session_id"], "type": "get_scene_info"},
                    )
                    assert done["status"] == "success"
                    commands += 1
        status = await client.ok("status")
    assert pages_read >= 2 * 2 * 4 and commands > 0
    assert status["blender"]["connected"] and status["blender"]["status"] == "connected"
    assert "disconnected" not in statuses, statuses
    pong = status["blender"]["pong_ms"]
    assert pong["max"] < 500, pong  # the heartbeat timeout never came near
