"""The session store: records exactly as PROTOCOL.md §3 names them, atomic writes,
journals, id validation, format versions."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import trio

from daemon.protocol import ErrorCode, RemoteProtocolError
from daemon.protocol.messages import NULL
from daemon.store import (
    BlenderInfo,
    CommandRecord,
    JournalDone,
    JournalOpen,
    JournalStart,
    RecordError,
    SessionData,
    SessionState,
    SessionStore,
    new_session_id,
    parse_session_id,
    replay_journal,
)
from daemon.store.files import atomic_write
from daemon.store.records import encode_journal_line

from .hostile import HOSTILE_IDS

# Every key of PROTOCOL.md §3's example record, at each level.
RECORD_KEYS = {"format", "session_id", "saved_at", "data"}
DATA_KEYS = {
    "session_id",
    "name",
    "created_at",
    "last_activity",
    "closed_at",
    "blender",
    "state",
    "command_count",
    "restored_from",
    "snapshot",
    "commands",
    "data",
}
BLENDER_KEYS = {"connected", "host", "port", "last_heartbeat", "version", "file"}
STATE_KEYS = {"objects", "selection", "last_command", "last_result", "scene"}
COMMAND_KEYS = {
    "seq",
    "type",
    "params",
    "status",
    "started_at",
    "duration_ms",
    "client_id",
    "result",
}


def make_data(session_id: str, **changes: object) -> SessionData:
    data = SessionData(
        session_id=session_id,
        name="demo",
        created_at=1.5,
        last_activity=2.5,
        closed_at=3.5,
        blender=BlenderInfo(connected=False, last_heartbeat=2.0, version="5.0.1"),
        state=SessionState(objects=["Cube"], selection="Cube", last_command="create_object"),
        command_count=1,
        restored_from=None,
        snapshot=None,
        commands=[
            CommandRecord(
                seq=1,
                type="create_object",
                params=msgspec.Raw(b'{"kind":"cube"}'),
                status="success",
                started_at=1.6,
                duration_ms=4.2,
                client_id="01J",
                result=msgspec.Raw(b'{"name":"Cube"}'),
            )
        ],
    )
    return msgspec.structs.replace(data, **changes)


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    store = SessionStore(tmp_path / "data")
    store.prepare()
    return store


async def test_saved_record_has_every_field_of_protocol_section_3(store: SessionStore) -> None:
    session_id = new_session_id()
    await store.save(make_data(session_id))
    on_disk = msgspec.json.decode(store.path_for(session_id).read_bytes())
    assert set(on_disk) == RECORD_KEYS and on_disk["format"] == 1
    assert set(on_disk["data"]) == DATA_KEYS
    assert set(on_disk["data"]["blender"]) == BLENDER_KEYS
    assert set(on_disk["data"]["state"]) == STATE_KEYS
    assert set(on_disk["data"]["commands"][0]) >= COMMAND_KEYS
    assert on_disk["session_id"] == on_disk["data"]["session_id"] == session_id
    loaded = await store.load(session_id)
    assert loaded.data == make_data(session_id)


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
async def test_hostile_session_ids_are_invalid_params_and_touch_nothing(
    store: SessionStore, hostile: str
) -> None:
    before = sorted(p.name for p in store.data_dir.rglob("*"))
    for attempt in (store.load(hostile), store.delete(hostile)):
        with pytest.raises(RemoteProtocolError) as caught:
            await attempt
        assert caught.value.code is ErrorCode.INVALID_PARAMS
        assert "expected scene-YYYYMMDD-HHMMSS-xxxxxxxx" in caught.value.message
    assert sorted(p.name for p in store.data_dir.rglob("*")) == before


def test_there_are_fifty_hostile_ids() -> None:
    assert len(set(HOSTILE_IDS)) >= 50


async def test_unknown_id_is_not_found(store: SessionStore) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        await store.load("scene-20260101-000000-0000abcd")
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert "blender-session list" in caught.value.message


async def test_newer_format_is_refused_whole_and_listed_as_damaged(store: SessionStore) -> None:
    session_id = new_session_id()
    store.path_for(session_id).write_bytes(
        b'{"format": 2, "session_id": "%s", "saved_at": "x", "data": {"brand": "new"}}'
        % session_id.encode()
    )
    with pytest.raises(RecordError) as caught:
        await store.load(session_id)
    assert "format 2, newer than this daemon reads (1)" in caught.value.message
    assert "upgrade" in caught.value.message
    listed, damaged = await store.list()
    assert listed == [] and [d.file for d in damaged] == [f"{session_id}.json"]


async def test_truncated_record_is_damaged_not_half_read(store: SessionStore) -> None:
    session_id = new_session_id()
    await store.save(make_data(session_id))
    path = store.path_for(session_id)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(RecordError, match="damaged"):
        await store.load(session_id)


async def test_list_stats_delete(store: SessionStore) -> None:
    ids = [new_session_id() for _ in range(3)]
    for session_id in ids:
        await store.save(make_data(session_id))
    store.path_for(ids[0], ".blend").write_bytes(b"B" * 1000)
    listed, damaged = await store.list()
    assert sorted(item.summary.session_id for item in listed) == sorted(ids)
    assert damaged == []
    sizes = {item.summary.session_id: item.size_bytes for item in listed}
    assert sizes[ids[0]] == sizes[ids[1]] + 1000
    stats = await store.stats()
    assert stats["session_count"] == 3
    assert stats["total_size_bytes"] == sum(sizes.values())
    assert stats["total_size_mb"] == round(sum(sizes.values()) / 1024 / 1024, 3)
    assert stats["storage_dir"] == str(store.sessions_dir)
    removed = await store.delete(ids[0])
    assert sorted(removed) == sorted([f"{ids[0]}.json", f"{ids[0]}.blend"])
    assert not store.exists(ids[0])
    with pytest.raises(RemoteProtocolError) as caught:
        await store.delete(ids[0])
    assert caught.value.code is ErrorCode.NOT_FOUND


def test_token_is_created_private_and_kept(store: SessionStore) -> None:
    token = store.load_or_create_token()
    path = store.data_dir / "control.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32
    assert store.load_or_create_token() == token


# --- atomicity ------------------------------------------------------------------------


@pytest.mark.parametrize("failing_call", ["write", "fsync", "replace"])
def test_write_failing_at_any_step_leaves_the_old_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: str
) -> None:
    target = tmp_path / "record.json"
    target.write_bytes(b"old")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing_call, fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind


WRITER = """
import sys
from pathlib import Path
from daemon.store.files import atomic_write
target = Path(sys.argv[1])
contents = [b"A" * 300_000, b"B" * 300_000]
i = 0
while True:
    print(i, flush=True)  # the test kills after a varying number of these
    atomic_write(target, contents[i % 2])
    i += 1
"""


def test_record_killed_mid_write_is_old_or_new_never_torn(tmp_path: Path) -> None:
    """SIGKILL a process that rewrites a record in a loop, 20 times at varying moments."""
    target = tmp_path / "record.json"
    target.write_bytes(b"A" * 300_000)
    for attempt in range(20):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE
        )
        assert writer.stdout is not None
        for _ in range(1 + attempt % 7):  # vary where in the write loop the kill lands
            writer.stdout.readline()
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert target.read_bytes() in (b"A" * 300_000, b"B" * 300_000)


# --- journal --------------------------------------------------------------------------


async def test_journal_replay_marks_unknown_outcome_and_drops_torn_tail(
    store: SessionStore,
) -> None:
    session_id = new_session_id()
    journal = await store.open_journal(session_id)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        await journal.append(
            JournalOpen(session=make_data(session_id, commands=[], closed_at=None))
        )
        for seq in (1, 2, 3):
            await journal.append(
                JournalStart(
                    seq=seq, type="create_object", params=NULL, started_at=float(seq), client_id="c"
                )
            )
        await journal.append(JournalDone(seq=1, status="success", duration_ms=1.0))
        await journal.append(JournalDone(seq=3, status="error", duration_ms=2.0))
        await journal.close()
    with journal.path.open("ab") as file:
        file.write(b'{"kind": "done", "seq": 2, "sta')  # the crash cut this line short
    replayed = replay_journal(journal.path)
    assert [(c.seq, c.status) for c in replayed.commands] == [
        (1, "success"),
        (2, "unknown"),
        (3, "error"),
    ]
    assert replayed.unknown_seqs == [2]
    assert replayed.torn_tail.startswith(b'{"kind": "done"')
    assert replayed.session.session_id == session_id


async def test_journal_damaged_in_the_middle_is_an_error(store: SessionStore) -> None:
    path = store.path_for(new_session_id(), ".journal")
    path.write_bytes(b'{"kind": "open"}\nGARBAGE\n{"kind": "start"}\n')
    with pytest.raises(RecordError, match=r"line [12] is damaged"):
        replay_journal(path)


async def test_journal_in_a_newer_format_is_refused_before_its_lines_are_read(
    store: SessionStore,
) -> None:
    session_id = new_session_id()
    opened = JournalOpen(session=make_data(session_id, commands=[]))
    line = msgspec.json.decode(encode_journal_line(opened))
    assert line["format"] == 1  # written by this daemon
    path = store.path_for(session_id, ".journal")
    path.write_bytes(msgspec.json.encode({**line, "format": 2}) + b'\n{"kind": "future"}\n')
    with pytest.raises(RecordError, match="format 2, newer than this daemon reads"):
        replay_journal(path)
    del line["format"]  # journals written before the field existed are format 1
    path.write_bytes(msgspec.json.encode(line) + b"\n")
    assert replay_journal(path).session.session_id == session_id


async def test_journal_concurrent_appends_are_all_written_once(store: SessionStore) -> None:
    session_id = new_session_id()
    journal = await store.open_journal(session_id)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        await journal.append(JournalOpen(session=make_data(session_id, commands=[])))
        async with trio.open_nursery() as writers:
            for seq in range(1, 501):
                writers.start_soon(
                    journal.append,
                    JournalStart(seq=seq, type="t", params=NULL, started_at=0.0, client_id=None),
                )
        await journal.close()
    lines = journal.path.read_bytes().splitlines()
    assert len(lines) == 501
    replayed = replay_journal(journal.path)
    assert [c.seq for c in replayed.commands] == list(range(1, 501))


async def test_journal_write_failure_is_raised_to_every_waiter(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = await store.open_journal(new_session_id())
    failures = []
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        monkeypatch.setattr(
            os,
            "write",
            lambda fd, data: (_ for _ in ()).throw(OSError(28, "No space left on device")),
        )

        async def append(seq: int) -> None:
            try:
                await journal.append(
                    JournalStart(seq=seq, type="t", params=NULL, started_at=0.0, client_id=None)
                )
            except OSError as error:
                failures.append(error.errno)

        async with trio.open_nursery() as writers:
            for seq in range(5):
                writers.start_soon(append, seq)
        monkeypatch.undo()
        await journal.close()
    assert failures == [28] * 5


def test_parse_session_id_accepts_generated_ids() -> None:
    for _ in range(100):
        session_id = new_session_id()
        assert parse_session_id(session_id) == session_id
