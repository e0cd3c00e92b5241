"""What a restarted daemon finds: open sessions recovered from their journals (a torn
last line cut off, a damaged line costing only itself), damaged records quarantined and
the rest served."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio

from .fake_addon import FakeAddon
from .helpers import (
    AsyncClient,
    create_cube,
    ready_client,
    running_daemon,
    token_of,
)


async def test_open_session_survives_daemon_restart(tmp_path: Path, fake: FakeAddon) -> None:
    data_dir = tmp_path / "data"
    async with running_daemon(data_dir, fake.port) as first:
        client = await ready_client(first)
        session_id = (await client.ok("session.open", {"name": "kept"}))["session_id"]
        for index in range(5):
            await client.ok(
                "session.command",
                create_cube(session_id, f"K{index}"),
            )
        await client.aclose()
    # Stopped without closing: the journal stays and the next start recovers it.
    async with running_daemon(data_dir, fake.port) as second:
        client = await ready_client(second)
        listed = await client.ok("session.list")
        assert [(s["session_id"], s["status"], s["command_count"]) for s in listed["sessions"]] == [
            (session_id, "open", 5)
        ]
        done = await client.ok("session.command", {"session_id": "kept", "type": "get_state"})
        assert done["seq"] == 6
        closed = await client.ok("session.close", {"session_id": "kept"})
        record = msgspec.json.decode(Path(closed["path"]).read_bytes())
        assert [c["seq"] for c in record["data"]["commands"]] == [1, 2, 3, 4, 5, 6]
        await client.aclose()


async def test_damaged_records_and_journals_are_quarantined_and_the_rest_served(
    tmp_path: Path, fake: FakeAddon
) -> None:
    data_dir = tmp_path / "data"
    sessions = data_dir / "sessions"
    async with running_daemon(data_dir, fake.port) as first:
        client = await ready_client(first)
        good = (await client.ok("session.open", {"name": "good"}))["session_id"]
        await client.ok("session.close", {"session_id": good})
        await client.aclose()
    good_record = (sessions / f"{good}.json").read_bytes()
    (sessions / "scene-20260101-000000-0000aaaa.json").write_bytes(good_record[:40])  # torn
    (sessions / "scene-20260101-000000-0000bbbb.json").write_bytes(b"\x00garbage\xff")
    (sessions / "scene-20260101-000000-0000cccc.json").write_bytes(
        b'{"format": 9, "session_id": "scene-20260101-000000-0000cccc", "data": {}}'
    )
    (sessions / "scene-20260101-000000-0000dddd.journal").write_bytes(b"not json\n{}\n")
    async with running_daemon(data_dir, fake.port) as second:
        assert second.control_port is not None
        with trio.fail_after(10):
            await second.service.ready.wait()  # start-up work is done in the background
        client = await AsyncClient.connect(second.control_port, token_of(second))
        listed = await client.ok("session.list")
        assert [s["session_id"] for s in listed["sessions"]] == [good]
        damaged = {d["file"].split("-", 2)[-1]: d["reason"] for d in listed["damaged"]}
        assert set(damaged) == {
            "scene-20260101-000000-0000aaaa.json",
            "scene-20260101-000000-0000bbbb.json",
            "scene-20260101-000000-0000cccc.json",
            "scene-20260101-000000-0000dddd.journal",
        }
        assert "newer than this daemon reads" in damaged["scene-20260101-000000-0000cccc.json"]
        assert all(d["file"].startswith("quarantine/") for d in listed["damaged"])
        assert sorted(p.name for p in sessions.iterdir()) == [f"{good}.json", f"{good}.steps"]
        assert len(list((data_dir / "quarantine").glob("*.reason.txt"))) == 4
        assert (await client.ok("session.show", {"session_id": good}))["data"]["name"] == "good"
        await client.aclose()
