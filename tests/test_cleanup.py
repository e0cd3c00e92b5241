"""Cleanup and expiry: the selection policy, the op (dry run and real), and the idle
TTL that closes and saves an open session nobody uses."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
import trio

from daemon.protocol import ErrorCode, RemoteProtocolError
from daemon.sessions.housekeeping import cleanup
from daemon.store.index import IndexedSession, SessionIndex

from .fake_addon import FakeAddon
from .helpers import AsyncClient, local_store, running_daemon, token_of
from .test_store import make_data

DAY = 86400.0
NOW = 1_800_000_000.0


def indexed(name: str, closed_days_ago: float | None) -> IndexedSession:
    closed_at = None if closed_days_ago is None else NOW - closed_days_ago * DAY
    return IndexedSession(
        session_id=f"scene-20260101-000000-{name:0>8}", name=name, created_at=0.0,
        closed_at=closed_at, last_activity=0.0, age_from=closed_at, command_count=0,
        size_bytes=100, restored_from=None, imported_at=None, blender_version="",
        record_size=1, record_mtime_ns=1,
    )  # fmt: skip


@pytest.fixture
def index(tmp_path: Path) -> SessionIndex:
    index = SessionIndex(tmp_path / "index.sqlite3")
    index.open()
    index.put(
        [indexed("a", 1), indexed("b", 40), indexed("c", 100), indexed("d", 200),
         indexed("e", None)]
    )  # fmt: skip
    return index


def names(selected: list[tuple[str, int]]) -> list[str]:
    return [session_id.rsplit("-", 1)[1].lstrip("0") for session_id, _ in selected]


def test_select_by_age_keep_newest_or_both(index: SessionIndex) -> None:
    def expired(older_than_days: float | None, keep: int | None) -> list[str]:
        cutoff = None if older_than_days is None else NOW - older_than_days * DAY
        return names(index.expired(keep, cutoff))

    assert expired(90, None) == ["c", "d"]
    assert expired(None, 2) == ["c", "d"]
    assert expired(None, 1) == ["b", "c", "d"]
    assert expired(30, 3) == ["d"]  # the newest 3 stay anyway
    assert expired(0, None) == ["a", "b", "c", "d"]  # never "e", which is open


async def test_cleanup_needs_a_rule(tmp_path: Path) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        await cleanup(local_store(tmp_path / "data"), None, None, dry_run=True)
    assert caught.value.code is ErrorCode.INVALID_PARAMS


async def test_cleanup_op_dry_run_then_delete(tmp_path: Path, fake: FakeAddon) -> None:
    data_dir = tmp_path / "data"
    store = local_store(data_dir)
    now = time.time()
    ids = {}
    for name, days in (("fresh", 2), ("old", 50), ("older", 120)):
        session_id = f"scene-20260101-000000-{len(ids):08x}"
        ids[name] = session_id
        await store.save(make_data(session_id, name=name, closed_at=now - days * DAY))
    async with running_daemon(data_dir, fake.port) as daemon:
        assert daemon.control_port is not None
        client = await AsyncClient.connect(daemon.control_port, token_of(daemon))
        dry = await client.ok("session.cleanup", {"older_than_days": 30, "dry_run": True})
        assert sorted(dry["deleted"]) == sorted([ids["old"], ids["older"]])
        assert dry["dry_run"] and dry["freed_bytes"] > 0 and dry["remaining"] == 1
        assert len((await client.ok("session.list"))["sessions"]) == 3  # nothing went
        done = await client.ok("session.cleanup", {"older_than_days": 30, "keep": 2})
        assert done["deleted"] == [ids["older"]] and done["remaining"] == 2
        left = [s["name"] for s in (await client.ok("session.list"))["sessions"]]
        assert sorted(left) == ["fresh", "old"]
        code, _ = await client.error("session.cleanup", {})
        assert code == "invalid_params"
        code, _ = await client.error("session.cleanup", {"keep": -1})
        assert code == "invalid_params"
        # 0 days is no age rule (as the daemon's flag); nothing left to select by.
        code, _ = await client.error("session.cleanup", {"older_than_days": 0})
        assert code == "invalid_params"
        # Rules that would delete every closed session need delete_all.
        code, message = await client.error("session.cleanup", {"keep": 0})
        assert code == "invalid_params" and "every closed session" in message
        assert len((await client.ok("session.list"))["sessions"]) == 2
        gone = await client.ok("session.cleanup", {"keep": 0, "delete_all": True})
        assert len(gone["deleted"]) == 2 and gone["remaining"] == 0
        await client.aclose()


async def test_idle_open_session_is_closed_and_saved(tmp_path: Path, fake: FakeAddon) -> None:
    async with running_daemon(
        tmp_path / "data",
        fake.port,
        idle_ttl_s=0.4,
    ) as daemon:
        with trio.fail_after(10):
            await daemon.link.wait_connected()
        assert daemon.control_port is not None
        client = await AsyncClient.connect(daemon.control_port, token_of(daemon))
        with daemon.service.events.subscribe() as events:
            session_id = (await client.ok("session.open", {"name": "forgotten"}))["session_id"]
            opened_at = trio.current_time()
            with trio.fail_after(10):
                async for event, data in events:
                    if event == "session_closed":
                        assert msgspec.json.decode(data)["session_id"] == session_id
                        break
        assert trio.current_time() - opened_at >= 0.4
        record = await daemon.store.load(session_id)
        assert record.data.name == "forgotten" and record.data.closed_at is not None
        await client.aclose()


async def test_schedule_never_deletes_sessions_younger_than_30_days(
    tmp_path: Path, fake: FakeAddon
) -> None:
    data_dir = tmp_path / "data"
    store = local_store(data_dir)
    now = time.time()
    for index, days in enumerate((2, 29, 31, 120)):
        await store.save(
            make_data(
                f"scene-20260101-000000-{index:08x}", name=f"d{days}", closed_at=now - days * DAY
            )
        )
    # Asked for 1 day, the schedule still keeps anything younger than 30 days.
    async with running_daemon(
        data_dir,
        fake.port,
        cleanup_interval_s=3600.0,
        cleanup_older_than_days=1.0,
    ) as daemon:
        with trio.fail_after(10):
            await daemon.housekeeper.wait_cleaned()
        listed, _ = await store.list()
        assert sorted(r.summary.name for r in listed) == ["d2", "d29"]
