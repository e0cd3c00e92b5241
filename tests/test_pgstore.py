"""Sessions in PostgreSQL (issue 18, its first part), against a real server the suite
starts (tests/postgres.py): the schema and its version, records as searchable JSONB,
content-addressed blobs, journal rows, leases; and `blender-session migrate` between a
real daemon's data dir and the database, both ways, checked file by file."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import psycopg
import pytest

from daemon.pgstore.catalog import CatalogRow, LeaseHeld, PgCatalog

from .postgres import Cluster, two_daemons, wait_until
from .programs import Programs
from .test_web_api import web_of

pytestmark = pytest.mark.blender


def test_catalog_keeps_records_blobs_journal_and_leases(postgres: Cluster) -> None:
    catalogs = [PgCatalog(postgres.url) for _ in range(2)]  # two daemons, one schema
    first, second = catalogs
    assert first.version == second.version == 2
    record = (
        b'{"format":1,"data":{"name":"chair","state":{"objects":["Seat"]},"data":{"c":"ACME"}}}'
    )
    row = CatalogRow(
        "scene-20260101-000000-00000001", "chair", "closed", 1.0, 2.0, 3, "5.0.1", None
    )
    big = bytes(range(256)) * 20_000  # 5 MB: several chunks
    first.put_record(record, row, {"blend": big, "png": b"png"})
    second.put_record(record, row, {"blend": big, "png": b"png"})  # the same content again
    assert second.record(row.session_id) == record  # the file's exact bytes
    # A journal write that comes after the record was saved brings nothing back.
    assert first.append_journal(row.session_id, 9, b'{"late":1}\n', "daemon-A", 30) == 0
    assert list(first.journal(row.session_id)) == [] and first.counts()["leases"] == 0
    assert second.file(row.session_id, "blend") == big
    assert first.counts()["blobs"] == 3  # record, blend, png: stored once each
    assert second.search("seat") == second.search("acme") == [row.session_id]
    assert second.search("Sea.") == []  # a literal, not a pattern
    lines = b'{"kind":"start"}\n{"a":1}\n'
    assert first.append_journal("open-0", 1, lines, "daemon-A", 30) == 2
    assert first.append_journal("open-0", 2, b'{"a":1}\n', "daemon-A", 30) == 0  # there
    assert list(first.journal("open-0")) == [b'{"kind": "start"}', b'{"a": 1}']
    # The lease keeps a second daemon from writing an open session it does not hold:
    # nothing of its batch is written, and neither is a record of it.
    with pytest.raises(LeaseHeld, match="daemon-A"):
        second.append_journal("open-0", 3, b'{"b":2}\n', "daemon-B", 30)
    assert len(list(first.journal("open-0"))) == 2
    open_row = CatalogRow("open-0", None, "closed", 1.0, 2.0, 0, None, None)
    with pytest.raises(LeaseHeld):
        second.put_record(b'{"format":1}', open_row, {}, holder="daemon-B")
    assert second.record("open-0") is None
    # A lease: one holder at a time; another takes it only once it has expired (the
    # database's clock decides: a lease of 0 s has expired by the next statement).
    assert first.acquire("open-1", "daemon-A", ttl_s=30) == "daemon-A"
    assert second.acquire("open-1", "daemon-B", ttl_s=30) == "daemon-A"
    assert first.acquire("open-1", "daemon-A", ttl_s=0) == "daemon-A"  # A stops renewing
    assert second.acquire("open-1", "daemon-B", ttl_s=30) == "daemon-B"
    assert first.acquire("open-1", "daemon-A", ttl_s=30) == "daemon-B"
    first.release("open-1", "daemon-A")  # not A's: nothing happens
    assert second.acquire("open-1", "daemon-B", ttl_s=30) == "daemon-B"
    # All of a daemon's live leases renewed in one statement; not another's.
    assert second.renew("daemon-B", 30, {"open-1": 4, "open-2": 0}) == {"open-1"}
    assert first.renew("daemon-A", 30, {"open-1": 9}) == set()
    for catalog in catalogs:
        catalog.close()


def test_a_newer_schema_is_refused(postgres: Cluster) -> None:
    PgCatalog(postgres.url).close()
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99)")
    with pytest.raises(RuntimeError, match="newer than this daemon"):
        PgCatalog(postgres.url)


def test_migrate_a_data_dir_into_the_database_and_back(
    programs: Programs,
    postgres: Cluster,
    tmp_path: Path,
) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session = programs.json("open", "--name", "moved")["session_id"]
    programs.json("cmd", "-s", session, "create_object", "kind=cube", "name=Moved")
    programs.cli("checkpoint", "-s", session)
    programs.json("close", session)
    sessions = programs.data_dir / "sessions"
    deadline = time.monotonic() + 60
    while not (sessions / f"{session}.png").exists():  # the thumbnail follows close
        assert time.monotonic() < deadline, "no thumbnail"
        programs.json("status")  # a round trip as the pace
    programs.stop()
    before = {p.relative_to(sessions): _sha(p) for p in sessions.rglob("*") if p.is_file()
              and not p.name.endswith((".steps", ".journal"))}  # fmt: skip

    moved = programs.json("migrate", "--to", postgres.url)
    assert moved["sessions"] == [session] and moved["checked"] == moved["files"] >= 4
    again = tmp_path / "elsewhere"
    back = programs.cli("--data-dir", str(again), "migrate", "--from", postgres.url).stdout
    assert back.startswith("migrated 1 sessions from postgresql://")
    after = {p.relative_to(again / "sessions"): _sha(p)
             for p in (again / "sessions").rglob("*") if p.is_file()}  # fmt: skip
    assert after == before  # the record, .blend, thumbnail and checkpoints, byte for byte
    shown = programs.cli("--data-dir", str(again), "show", session).stdout  # read offline
    assert "Moved" in shown and "create_object" in shown
    bad = programs.cli("migrate", "--to", "mysql://nope", check=False)
    assert bad.returncode == 1 and "not a postgresql:// URL" in bad.stderr
    down = programs.cli("migrate", "--to", "postgresql://postgres@127.0.0.1:1/x", check=False)
    assert down.returncode == 1 and "cannot reach the database" in down.stderr


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_daemons_share_saved_sessions_through_the_database(
    postgres: Cluster, tmp_path: Path
) -> None:
    """A session saved on A is listed, shown and restored on B from the database alone
    (its .blend and thumbnail included; A's disk untouched); A's open session is listed
    on B as held by A."""
    with two_daemons(tmp_path, postgres) as (a, b):
        saved = a.json("open", "--name", "shared chair")["session_id"]
        a.json("cmd", "-s", saved, "create_object", "kind=cube", "name=Chair")
        a.cli("set-data", "-s", saved, "client", "Acme Furniture")
        a.json("close", saved)
        wait_until(
            lambda: _published_with_thumbnail(postgres, saved), "A's session in the database"
        )
        held = a.json("open", "--name", "still on A")["session_id"]
        on_a = {p: p.stat().st_mtime_ns for p in a.data_dir.rglob("*") if p.is_file()
                and not p.name.endswith((".journal", ".sqlite3", "-wal", "-shm"))}  # fmt: skip

        listed = {s["session_id"]: s for s in _listed(b)}
        assert listed[saved]["status"] == "closed" and listed[saved]["name"] == "shared chair"
        wait_until(lambda: held in {s["session_id"] for s in _listed(b)}, "A's open session on B")
        other = next(s for s in _listed(b) if s["session_id"] == held)
        assert other["status"] == "open" and str(a.data_dir) in (other["held_by"] or "")
        # Searched by the database: its objects and free-form data, nothing copied to B.
        http, _ = web_of(b)
        for text in ("acme furn", "CHAIR"):
            status, listed = http.json(f"/api/sessions?q={text.replace(' ', '+')}")
            assert status == 200 and [s["session_id"] for s in listed["sessions"]] == [saved]
        assert not (b.data_dir / "sessions" / f"{saved}.json").exists()
        shown = b.cli("show", "shared chair").stdout  # fetched from the database
        assert "create_object" in shown and "Chair" in shown
        restored = b.json("restore", "shared chair")
        assert restored["path"] == "blend"
        state = b.json("state", restored["session_id"])["scene"]["objects"]
        assert [o["name"] for o in state] == ["Chair"]
        assert (b.data_dir / "sessions" / f"{saved}.png").read_bytes().startswith(b"\x89PNG")
        after = {p: p.stat().st_mtime_ns for p in on_a}
        assert after == on_a  # A's files: read by nobody but A


def _listed(programs: Programs) -> list[dict]:
    return programs.json("list")["sessions"]


def _published_with_thumbnail(postgres: Cluster, session_id: str) -> bool:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        names = {row[0] for row in conn.execute(
            "SELECT name FROM session_files WHERE session_id = %s", (session_id,)
        )}  # fmt: skip
    return {"record.json", "blend", "png"} <= names


def test_a_session_saved_while_the_database_is_down_is_published_when_it_returns(
    postgres: Cluster, programs: Programs
) -> None:
    programs.start_blender()
    programs.start_daemon("--store", postgres.url)
    programs.wait_connected()
    postgres.stop()  # the database goes away; the daemon works on
    session = programs.json("open", "--name", "offline")["session_id"]
    programs.json("cmd", "-s", session, "create_object", "kind=cube", "name=Kept")
    closed = programs.json("close", session)
    assert Path(closed["path"]).exists()  # saved here, as always
    assert programs.json("list")["sessions"][0]["session_id"] == session
    postgres.start_again()
    wait_until(lambda: _published_with_thumbnail(postgres, session), "the publication", 90)
    assert any('"shared_store_unreachable"' in line for line in programs.daemon_log)
