"""The session store: records exactly as PROTOCOL.md §3 names them, atomic writes,
journals, id validation, format versions.

Long because each store rule is a short test beside the others.
"""

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
    DataDir,
    DataDirError,
    DataDirLocked,
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

from .helpers import local_store
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
# Additive fields this code writes beyond PROTOCOL.md §3 (docs/protocol-notes.md).
ADDITIVE_DATA_KEYS = {"restarts", "imported_at", "checkpoints", "last_seq", "timeline"}
ADDITIVE_BLENDER_KEYS = {"instance_id"}
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
    store = local_store(tmp_path / "data")
    return store


async def test_saved_record_has_every_field_of_protocol_section_3(store: SessionStore) -> None:
    session_id = new_session_id()
    await store.save(make_data(session_id))
    on_disk = msgspec.json.decode(store.path_for(session_id).read_bytes())
    assert set(on_disk) == RECORD_KEYS and on_disk["format"] == 1
    assert set(on_disk["data"]) == DATA_KEYS | ADDITIVE_DATA_KEYS
    assert set(on_disk["data"]["blender"]) == BLENDER_KEYS | ADDITIVE_BLENDER_KEYS
    assert set(on_disk["data"]["state"]) == STATE_KEYS
    assert set(on_disk["data"]["commands"][0]) >= COMMAND_KEYS
    assert on_disk["session_id"] == on_disk["data"]["session_id"] == session_id
    loaded = await store.load(session_id)
    assert loaded.data == make_data(session_id)


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
async def test_hostile_session_ids_are_invalid_params_and_touch_nothing(
    store: SessionStore, hostile: str
) -> None:
    before = sorted(p.name for p in store.root.rglob("*"))
    for attempt in (store.load(hostile), store.delete(hostile)):
        with pytest.raises(RemoteProtocolError) as caught:
            await attempt
        assert caught.value.code is ErrorCode.INVALID_PARAMS
        assert "expected scene-YYYYMMDD-HHMMSS-xxxxxxxx" in caught.value.message
    assert sorted(p.name for p in store.root.rglob("*")) == before


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


async def test_list_and_delete(store: SessionStore) -> None:
    ids = [new_session_id() for _ in range(3)]
    for session_id in ids:
        await store.save(make_data(session_id))
    store.path_for(ids[0], ".blend").write_bytes(b"B" * 1000)
    listed, damaged = await store.list()
    assert sorted(item.summary.session_id for item in listed) == sorted(ids)
    assert damaged == []
    sizes = {item.summary.session_id: item.size_bytes for item in listed}
    assert sizes[ids[0]] == sizes[ids[1]] + 1000
    removed = await store.delete(ids[0])
    assert sorted(removed) == sorted([f"{ids[0]}.{kind}" for kind in ("json", "blend", "steps")])
    assert not store.exists(ids[0])
    with pytest.raises(RemoteProtocolError) as caught:
        await store.delete(ids[0])
    assert caught.value.code is ErrorCode.NOT_FOUND


def test_token_is_created_private_and_kept(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "data")
    data_dir.check_and_create()
    token = data_dir.load_or_create_token()
    path = data_dir.path / "control.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token.value) >= 32 and token.warning is None
    assert data_dir.load_or_create_token() == token


def test_readable_token_is_made_private_with_a_warning_to_replace_it(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "data")
    data_dir.check_and_create()
    first = data_dir.load_or_create_token()
    path = data_dir.path / "control.token"
    path.chmod(0o644)
    again = data_dir.load_or_create_token()
    assert again.value == first.value and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert again.warning is not None
    assert "mode 644" in again.warning and "delete it and restart" in again.warning


def test_token_that_is_a_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "data")
    data_dir.check_and_create()
    target = tmp_path / "somebody-elses-file"
    target.write_text("not a token")
    target.chmod(0o644)
    (data_dir.path / "control.token").symlink_to(target)
    with pytest.raises(DataDirError, match="symbolic link"):
        data_dir.load_or_create_token()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not chmod-ed through the link


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_data_dir_others_can_write_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "data"
    root.mkdir()
    root.chmod(mode)
    with pytest.raises(DataDirError) as caught:
        DataDir(root).check_and_create()
    assert f"mode {mode:o}" in str(caught.value)
    assert f"chmod 700 {root}" in str(caught.value)


def test_second_lock_on_a_data_dir_names_the_holder(tmp_path: Path) -> None:
    first, second = DataDir(tmp_path / "data"), DataDir(tmp_path / "data")
    first.check_and_create()
    first.lock()
    try:
        with pytest.raises(DataDirLocked, match=f"pid {os.getpid()}"):
            second.lock()
    finally:
        first.unlock()
    second.lock()  # released: the next daemon gets it
    second.unlock()


async def test_symlinked_record_is_damaged_never_followed(store: SessionStore) -> None:
    outside = store.root.parent / "elsewhere.json"
    session_id = new_session_id()
    await store.save(make_data(session_id))
    outside.write_bytes(store.path_for(session_id).read_bytes())
    store.path_for(session_id).unlink()
    store.path_for(session_id).symlink_to(outside)
    listed, damaged = await store.list()
    assert listed == []
    assert [d.file for d in damaged] == [f"{session_id}.json"]
    assert "symbolic link" in damaged[0].reason and "remove it" in damaged[0].reason
    with pytest.raises(RecordError, match="symbolic link"):
        await store.load(session_id)


async def test_restored_dir_that_is_a_link_is_refused(store: SessionStore) -> None:
    outside = store.root.parent / "outside"
    outside.mkdir()
    session_id = new_session_id()
    store.path_for(session_id, ".blend").write_bytes(b"BLENDER")
    store.restored_dir.symlink_to(outside)
    with pytest.raises(OSError, match="symbolic link"):
        await store.copy_snapshot(session_id, store.working_copy_path(new_session_id()))
    assert list(outside.iterdir()) == []


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


def start_line(seq: int) -> JournalStart:
    return JournalStart(seq=seq, type="create_object", params=NULL, started_at=float(seq),
                        client_id="c")  # fmt: skip


async def written_journal(store: SessionStore, session_id: str) -> Path:
    """A journal: opened, three commands started, the first and third finished."""
    journal = await store.open_journal(session_id)
    journal.write(JournalOpen(session=make_data(session_id, commands=[], closed_at=None)))
    for seq in (1, 2, 3):
        journal.write(start_line(seq))
    journal.write(JournalDone(seq=1, status="success", duration_ms=1.0))
    journal.write(JournalDone(seq=3, status="error", duration_ms=2.0))
    await journal.close()
    return journal.path


async def test_journal_replay_marks_unknown_outcome_and_reports_torn_tail(
    store: SessionStore,
) -> None:
    session_id = new_session_id()
    path = await written_journal(store, session_id)
    with path.open("ab") as file:
        file.write(b'{"kind": "done", "seq": 2, "sta')  # the crash cut this line short
    replayed = replay_journal(path)
    assert [(c.seq, c.status) for c in replayed.commands] == [
        (1, "success"),
        (2, "unknown"),
        (3, "error"),
    ]
    assert replayed.unknown_seqs == [2]
    assert replayed.torn_tail.startswith(b'{"kind": "done"')
    assert replayed.session.session_id == session_id


@pytest.mark.parametrize("torn_bytes", [1, 5_000, 3 * 1024 * 1024])
async def test_torn_tail_is_cut_before_the_next_append(
    store: SessionStore, torn_bytes: int
) -> None:
    """A SIGKILL inside the write of a large line leaves part of it; recovery cuts the
    file back to its last whole line, so the next line is not glued onto it."""
    session_id = new_session_id()
    path = await written_journal(store, session_id)
    whole = path.read_bytes()
    with path.open("ab") as file:
        file.write((b'{"kind":"start","seq":4,"params":{"code":"' + b"x" * torn_bytes)[:torn_bytes])
    assert await store.cut_torn_tail(session_id) == torn_bytes
    assert path.read_bytes() == whole
    journal = await store.open_journal(session_id)
    journal.write(start_line(4))
    journal.write(JournalDone(seq=4, status="success", duration_ms=1.0))
    await journal.close()
    replayed = replay_journal(path)
    assert [(c.seq, c.status) for c in replayed.commands][-1] == (4, "success")
    assert replayed.damaged == [] and replayed.torn_tail == b""


async def test_damaged_line_in_the_middle_costs_only_itself(store: SessionStore) -> None:
    session_id = new_session_id()
    path = await written_journal(store, session_id)
    lines = path.read_bytes().split(b"\n")
    lines[3] = b'{"kind": "start", GARBAGE'  # seq 3's start line
    path.write_bytes(b"\n".join(lines))
    replayed = replay_journal(path)
    assert [(c.seq, c.status) for c in replayed.commands] == [(1, "success"), (2, "unknown")]
    assert [line.number for line in replayed.damaged] == [4]
    assert replayed.damaged[0].data == b'{"kind": "start", GARBAGE'


async def test_journal_without_a_readable_opening_line_is_refused(store: SessionStore) -> None:
    path = store.path_for(new_session_id(), ".journal")
    path.write_bytes(b'GARBAGE\n{"kind": "start"}\n')
    with pytest.raises(RecordError, match="no readable opening line"):
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


async def test_fsync_journal_runs_callbacks_after_one_group_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = local_store(tmp_path / "data", journal_fsync=True)
    session_id = new_session_id()
    journal = await store.open_journal(session_id)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    durable: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        journal.write(JournalOpen(session=make_data(session_id, commands=[])))
        for seq in range(1, 51):
            journal.write(start_line(seq))
            journal.when_durable(
                lambda error, seq=seq: durable.append(seq) if error is None else None
            )
        with trio.fail_after(5):
            await journal.durable()
        await journal.close()
    assert durable == list(range(1, 51))
    assert 1 <= len(synced) <= 3  # a burst shares its fsyncs (group commit)
    assert [c.seq for c in replay_journal(journal.path).commands] == list(range(1, 51))


async def test_journal_write_failure_leaves_no_half_line(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = new_session_id()
    journal = await store.open_journal(session_id)
    journal.write(JournalOpen(session=make_data(session_id, commands=[])))
    assert journal.flush() is None
    before = journal.path.read_bytes()
    real_write = os.write
    calls = []

    def half_then_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    told: list[OSError | None] = []
    journal.write(start_line(1))
    journal.when_written(told.append)
    assert told == []  # pending: nothing is in the file until the flush
    error = journal.flush()
    monkeypatch.undo()
    assert isinstance(error, OSError) and "No space left" in str(error) and told == [error]
    assert journal.path.read_bytes() == before
    journal.write(start_line(2))
    await journal.close()
    assert [c.seq for c in replay_journal(journal.path).commands] == [2]


def test_parse_session_id_accepts_generated_ids() -> None:
    for _ in range(100):
        session_id = new_session_id()
        assert parse_session_id(session_id) == session_id
