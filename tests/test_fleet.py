"""Many daemons, one PostgreSQL (issue 18): an acknowledged command is committed in the
database; PostgreSQL restarted mid-stream loses nothing; a bounded backlog while it is
away; the lease keeps a second daemon from writing an open session it does not hold;
a daemon SIGKILLed mid-stream and its open session adopted by another, with every
acknowledged command and its scene. Real daemons, real headless Blenders, a real
PostgreSQL the suite starts (tests/postgres.py)."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from daemon.clients.client import ClientError, ControlClient, find_endpoint
from daemon.sessions.replication import ACK_WAIT_S

from .helpers import create_cube
from .postgres import Cluster, journal_rows, two_daemons, wait_until
from .programs import Programs
from .test_web_api import web_of

pytestmark = pytest.mark.blender


def _client(programs: Programs, timeout_s: float = 120.0) -> ControlClient:
    host, port, token = find_endpoint(programs.data_dir)
    return ControlClient(host, port, token, timeout_s=timeout_s)


def _call(client: ControlClient, op: str, params: dict[str, Any]) -> Any:
    return msgspec.json.decode(client.call(op, params))


def _local_lines(programs: Programs, session_id: str) -> list[dict[str, Any]]:
    path = programs.data_dir / "sessions" / f"{session_id}.journal"
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _start(programs: Programs, postgres: Cluster, *extra: str) -> None:
    """A headless Blender and a daemon on the shared store, connected."""
    programs.start_blender()
    programs.start_daemon("--store", postgres.url, *extra)
    programs.wait_connected()


def _caught_up(postgres: Cluster, programs: Programs, session_id: str) -> bool:
    """The database holds as many of the session's journal lines as the local file."""
    return len(journal_rows(postgres, session_id)) == len(_local_lines(programs, session_id))


def _done_seqs(lines: list[dict[str, Any]]) -> set[int]:
    return {line["seq"] for line in lines if line["kind"] == "done"}


def test_an_acknowledged_command_is_already_committed_in_the_database(
    postgres: Cluster, programs: Programs
) -> None:
    _start(programs, postgres)
    session = programs.json("open", "--name", "committed")["session_id"]
    with _client(programs) as client:
        for n in range(10):
            seq = _call(client, "session.command", create_cube(session, f"C{n}"))["seq"]
            assert seq in _done_seqs(journal_rows(postgres, session))  # no wait: already there


def test_postgres_restarted_mid_stream_loses_nothing(postgres: Cluster, programs: Programs) -> None:
    """Commands go on while the database is away (answered from the local journal); it
    catches up when it returns, and the record there holds every command."""
    _start(programs, postgres)
    session = programs.json("open", "--name", "through a restart")["session_id"]
    answered: list[int] = []
    errors: list[Exception] = []
    progress = threading.Condition()
    stop = threading.Event()

    def stream() -> None:
        try:
            with _client(programs) as client:
                for n in itertools.count():
                    if stop.is_set():
                        return
                    reply = _call(client, "session.command", create_cube(session, f"R{n}"))
                    with progress:
                        answered.append(reply["seq"])
                        progress.notify_all()
        except (ClientError, OSError) as error:
            errors.append(error)
            with progress:
                progress.notify_all()

    def fifty_more() -> None:
        with progress:
            count = len(answered) + 50
            assert progress.wait_for(lambda: len(answered) >= count or errors, 120), answered
        assert not errors, errors

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        fifty_more()
        postgres.stop()  # mid-stream
        fifty_more()  # answered on while it is away
        postgres.start_again()
        fifty_more()
    finally:
        stop.set()
        streamer.join(120)
    assert not errors
    wait_until(lambda: _caught_up(postgres, programs, session), "the catching up", 90)
    assert journal_rows(postgres, session) == _local_lines(programs, session)
    assert set(answered) <= _done_seqs(journal_rows(postgres, session))
    log = "".join(programs.daemon_log)
    assert '"shared_store_behind"' in log and '"shared_store_caught_up"' in log
    closed = programs.json("close", session)
    assert closed["command_count"] == len(answered)


def test_a_database_that_hangs_costs_one_wait_then_commands_go_on(
    postgres: Cluster, programs: Programs
) -> None:
    """PostgreSQL stopped dead (SIGSTOP: connections open, nothing answers): the first
    reply waits ACK_WAIT_S for a commit, then the daemon answers from its local journal
    and catches up once the database moves again."""
    _start(programs, postgres)
    session = programs.json("open", "--name", "hung")["session_id"]
    with _client(programs) as client:
        _call(client, "session.command", create_cube(session, "Before"))
        frozen = postgres.freeze()
        try:
            for n in range(5):  # bounded by the client's timeout: no reply ever hangs
                reply = _call(client, "session.command", create_cube(session, f"H{n}"))
                assert reply["status"] == "success"
            assert f"no commit within {ACK_WAIT_S} s" in "".join(programs.daemon_log)
            listed = programs.json("list")["sessions"]  # the database's part is skipped
            assert [s["session_id"] for s in listed] == [session]
            found = programs.json("list", "--text", "H4")["sessions"]
            assert [s["session_id"] for s in found] == [session]
        finally:
            for process in frozen:
                process.resume()
    wait_until(lambda: _caught_up(postgres, programs, session), "the catching up", 90)
    assert _done_seqs(journal_rows(postgres, session)) >= {1, 2, 3, 4, 5, 6}


def test_a_full_backlog_refuses_new_commands_with_storage_until_the_database_returns(
    postgres: Cluster, programs: Programs
) -> None:
    _start(programs, postgres, "--store-backlog-kib", "4")
    session = programs.json("open", "--name", "backlog")["session_id"]
    postgres.stop()
    ran: list[str] = []
    with _client(programs) as client:
        for n in range(200):  # a few hundred bytes a command: 4 KiB fill in far fewer
            try:
                _call(client, "session.command", create_cube(session, f"B{n}"))
            except ClientError as error:
                refused = error
                break
            ran.append(f"B{n}")
        else:
            raise AssertionError("never refused")
        assert refused.code == "storage" and "shared store is unreachable" in str(refused)
        assert "not sent to Blender" in str(refused)
        objects = _call(client, "session.state", {"session_id": session})["scene"]["objects"]
        assert sorted(o["name"] for o in objects) == sorted(ran)  # the refused one never ran
        postgres.start_again()
        wait_until(lambda: _caught_up(postgres, programs, session), "the catching up", 90)

        def accepted() -> bool:
            try:
                _call(client, "session.command", create_cube(session, "After"))
            except ClientError as error:
                assert error.code == "storage"
                return False
            return True

        wait_until(accepted, "commands accepted again", 30)


def test_a_daemon_killed_mid_stream_and_its_session_adopted_by_another(
    postgres: Cluster, tmp_path: Path
) -> None:
    with two_daemons(tmp_path, postgres, "--store-lease", "4") as (a, b):
        session = a.json("open", "--name", "adoptee")["session_id"]
        a.json("cmd", "-s", session, "create_object", "kind=cube", "name=Base")
        a.cli("checkpoint", "-s", session)  # then commands after it: replayed on adoption

        # While A lives, its lease keeps B out: no adopting, no commands through B.
        refused = b.cli("adopt", session, check=False)
        assert refused.returncode != 0 and "held by the daemon" in refused.stderr
        assert str(a.data_dir) in refused.stderr
        elsewhere = b.cli("cmd", "-s", session, "create_object", "kind=cube", check=False)
        assert elsewhere.returncode != 0 and "open on another daemon" in elsewhere.stderr
        same = b.cli("open", "--name", "adoptee", check=False)  # names are fleet-wide
        assert same.returncode != 0 and "session name 'adoptee' is taken" in same.stderr
        listed = b.cli("list").stdout
        assert f"{session} is held by the daemon {a_holder(a)}" in listed
        shown = b.cli("show", session, check=False)
        assert shown.returncode != 0 and f"open on the daemon {a_holder(a)}" in shown.stderr

        acknowledged: list[str] = ["Base"]
        sent: list[str] = ["Base"]
        enough = threading.Event()

        def stream() -> None:
            with _client(a) as client:
                for n in range(100_000):
                    sent.append(f"K{n}")
                    try:
                        _call(client, "session.command", create_cube(session, f"K{n}"))
                    except (ClientError, OSError):
                        enough.set()
                        return  # A died: this one was never acknowledged
                    acknowledged.append(f"K{n}")
                    if len(acknowledged) == 40:
                        enough.set()

        streamer = threading.Thread(target=stream)
        streamer.start()
        assert enough.wait(120), "the stream did not get going"
        assert a.daemon is not None
        a.daemon.send_signal(signal.SIGKILL)  # mid-stream
        a.daemon.wait()
        streamer.join(60)

        own = b.json("open", "--name", "B's own")["session_id"]  # on the Blender adopted into
        adopted: dict[str, Any] = {}

        def adopt() -> bool:  # refused until A's lease expires (4 s after its last renewal)
            result = b.cli("--json", "adopt", session, check=False)
            if result.returncode != 0:
                said = result.stdout + result.stderr  # --json: the error on stdout
                assert "held by the daemon" in said, said
                return False
            adopted.update(json.loads(result.stdout))
            return True

        wait_until(adopt, "the adoption", 20)  # the lease lasts 4 s, not the default 30
        assert adopted["resumed"], adopted
        assert len(adopted["notes"]) == 1 and f"session {own}" in adopted["notes"][0]
        assert adopted["commands"] >= len(acknowledged)
        names = {o["name"] for o in b.json("state", session)["scene"]["objects"]}
        assert set(acknowledged) <= names <= set(sent)
        with _client(b) as client:  # B's Blender has that scene, not only B's record
            read = {"session_id": session, "type": "get_scene_info", "params": {}}
            scene = _call(client, "session.command", read)
            assert {o["name"] for o in scene["result"]["objects"]} >= set(acknowledged)
        after = b.json("cmd", "-s", session, "create_object", "kind=cube", "name=OnB")
        assert after["seq"] > adopted["steps"]

        # A back on its data dir (its journal of the session still there): B holds the
        # session now, so A takes no more commands for it and never publishes its copy.
        a.start_daemon("--store", postgres.url, "--store-lease", "4")
        a.wait_connected()

        def refused_on_a() -> bool:
            said = a.cli("cmd", "-s", session, "create_object", "kind=cube", check=False)
            return said.returncode != 0 and "adopted it" in said.stdout + said.stderr

        wait_until(refused_on_a, "A seeing that B adopted the session", 30)
        closed = b.json("close", session)
        assert closed["command_count"] >= len(acknowledged) + 2  # + the scene read, OnB
        wait_until(lambda: _published(postgres, session) == closed["command_count"],
              "B's record in the database")  # fmt: skip
        assert journal_rows(postgres, session) == []  # in the record now: no journal rows
        a.json("close", session)  # A's copy: saved in A's data dir only
        wait_until(lambda: '"not_published"' in "".join(a.daemon_log), "A's publication refused")
        assert _published(postgres, session) == closed["command_count"]


def a_holder(programs: Programs) -> str:
    """How a daemon is named in the shared store: host and data dir."""
    return f"{socket.gethostname()}:{programs.data_dir}"


def _published(postgres: Cluster, session_id: str) -> int | None:
    """The command count of the session's record in the database, once closed there."""
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT command_count FROM sessions WHERE session_id = %s AND status = 'closed'",
            (session_id,),
        ).fetchone()
    return None if row is None else int(row[0])


def test_events_cross_daemons_to_watch_and_the_web_gallery(
    postgres: Cluster, tmp_path: Path, browser: Any
) -> None:
    """LISTEN/NOTIFY: what A records reaches B's `watch` and B's gallery page in a real
    browser, with no reload."""
    with two_daemons(tmp_path, postgres) as (a, b):
        _, link = web_of(b)
        page = browser.new_context(bypass_csp=True).new_page()
        page.goto(link)
        page.locator("#live").filter(has_text="Blender").wait_for()
        seen: list[dict[str, Any]] = []
        with _client(b, timeout_s=60) as watcher:
            stream = watcher.stream("watch")
            assert next(stream).event == "watching"
            session = a.json("open", "--name", "made on A")["session_id"]
            a.json("cmd", "-s", session, "create_object", "kind=cube", "name=FromA")
            held = page.locator(".card", has_text="made on A").locator(".held")
            held.wait_for(timeout=30_000)  # open on A: listed on B, no reload
            assert str(a.data_dir) in held.inner_text()
            a.json("close", session)
            for item in stream:  # bounded by the client's timeout
                if item.event == "shared_changed":
                    seen.append(msgspec.json.decode(item.data))
                    if seen[-1]["change"] == "saved":
                        break
        assert {s["session_id"] for s in seen} == {session}
        assert all(str(a.data_dir) in s["daemon"] for s in seen)
        assert [s["change"] for s in seen][-1] == "saved" and "journal" in {
            s["change"] for s in seen
        }
        page.locator(".card", has_text="made on A").wait_for(timeout=30_000)  # no reload


def test_a_daemon_killed_and_restarted_goes_on_where_the_database_s_copy_ends(
    postgres: Cluster, programs: Programs
) -> None:
    _start(programs, postgres)
    session = programs.json("open", "--name", "comes back")["session_id"]
    for n in range(5):
        programs.json("cmd", "-s", session, "create_object", "kind=cube", f"name=K{n}")
    before = len(journal_rows(postgres, session))
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGKILL)
    programs.daemon.wait()
    programs.start_daemon("--store", postgres.url)
    programs.wait_connected()  # the session recovered from its journal here
    after = programs.json("cmd", "-s", session, "create_object", "kind=cube", "name=Later")
    assert after["seq"] == 6 and after["seq"] in _done_seqs(journal_rows(postgres, session))
    assert journal_rows(postgres, session) == _local_lines(programs, session)
    resumed = [json.loads(line) for line in programs.daemon_log
               if '"journal_copy_resumed"' in line]  # fmt: skip
    assert resumed and resumed[0]["lines"] == before  # not sent again from line 1
