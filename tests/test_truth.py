"""The record is the truth: issue 12's faults, each tried the way a user meets it,
against the real programs (blender-sessiond, blender-session, a real headless Blender).
Each test names the item it proves.

Long because each fault it makes is a short test beside the others of its kind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from daemon.clients.client import find_endpoint

from .programs import BIN, Programs

pytestmark = pytest.mark.blender
BOUND_S = 60.0  # bound on every wait for a real process


def control(programs: Programs) -> tuple[int, str]:
    _, port, token = find_endpoint(programs.data_dir)
    return port, token


def raw_request(port: int, line: bytes, timeout_s: float = BOUND_S) -> dict[str, Any]:
    """One raw line to the control port (or proxy), one reply back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(line)
        reply: dict[str, Any] = json.loads(sock.makefile("rb").readline())
        return reply


def wait_for(predicate: Any, what: str, bound_s: float = BOUND_S) -> None:
    """Poll a real process's state (each call is a full CLI or socket round trip)."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if predicate():
            return
    raise AssertionError(f"timed out waiting for {what}")


def commands_of(programs: Programs, session: str) -> list[dict[str, Any]]:
    shown = programs.json("show", session)
    commands: list[dict[str, Any]] = shown["data"]["commands"]
    return commands


# --- data loss ------------------------------------------------------------------------


def test_a_torn_large_tail_is_cut_and_a_second_crash_loses_nothing(programs: Programs) -> None:
    """Item 1: a SIGKILL inside the write of a MiB-sized line leaves half of it; the
    next start cuts it off before appending, and a second crash still loses nothing."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "torn")["session_id"]
    programs.cli("cmd", "create_object", "kind=cube", "name=One")
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGKILL)
    programs.daemon.wait()
    journal = programs.data_dir / "sessions" / f"{session_id}.journal"
    big = b'{"kind":"start","seq":2,"type":"set_material","params":{"object":"' + b"x" * (3 << 20)
    with journal.open("ab") as file:
        file.write(big[: len(big) // 2])  # the crash landed in the middle of this line
    programs.start_daemon()
    programs.wait_connected()
    programs.cli("cmd", "create_object", "kind=cone", "name=Two")
    programs.daemon.send_signal(signal.SIGKILL)  # a second crash
    programs.daemon.wait()
    programs.start_daemon()
    programs.wait_connected()
    listed = programs.json("list")
    assert listed["damaged"] == []  # nothing quarantined
    commands = commands_of(programs, session_id)
    assert [(c["seq"], c["params"]["name"], c["status"]) for c in commands] == [
        (1, "One", "success"),
        (2, "Two", "success"),
    ]
    closed = programs.json("close", session_id)
    assert closed["command_count"] == 2


def test_import_never_writes_the_id_of_an_open_session(programs: Programs, tmp_path: Path) -> None:
    """Item 2: not without --overwrite, not with it; and the next start keeps the open
    session's journal."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    chosen = "scene-20260101-120000-00000abc"
    programs.json("open", "--session-id", chosen)
    programs.cli("cmd", "-s", chosen, "create_object", "kind=cube", "name=Exported")
    programs.json("close", chosen)
    archive = tmp_path / "one.tar.gz"
    programs.json("export", chosen, "-o", str(archive))
    programs.json("delete", chosen)
    programs.json("open", "--session-id", chosen)  # the same id, open now
    programs.cli("cmd", "-s", chosen, "create_object", "kind=cone", "name=Live")
    for flags in ((), ("--overwrite",)):
        imported = programs.json("import", str(archive), *flags)
        ((moved),) = imported["imported"]
        assert moved["from_id"] == chosen and moved["to_id"] != chosen
        assert imported["overwritten"] == [] and "is open" in imported["notes"][0]
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGTERM)
    programs.daemon.wait(20)
    programs.start_daemon()
    programs.wait_connected()
    closed = programs.json("close", chosen)
    data = json.loads(Path(closed["path"]).read_text())["data"]
    assert [c["params"]["name"] for c in data["commands"]] == ["Live"]


def test_a_second_daemon_on_the_same_data_dir_exits_at_once_touching_nothing(
    programs: Programs,
) -> None:
    """Item 3: one daemon per data dir."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    endpoint = (programs.data_dir / "control.json").read_bytes()
    assert programs.daemon is not None
    second = subprocess.run(
        [str(BIN / "blender-sessiond"), "--data-dir", str(programs.data_dir),
         "--control-port", "0", "--addon-port", str(programs.addon_port)],
        env=programs.env, capture_output=True, text=True, timeout=BOUND_S,
    )  # fmt: skip
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {programs.daemon.pid}" in lines[0] and "--data-dir" in lines[0]
    assert (programs.data_dir / "control.json").read_bytes() == endpoint
    assert programs.json("status")["pid"] == programs.daemon.pid


def test_a_frozen_blender_commands_are_unknown_then_take_their_real_outcome(
    programs: Programs,
) -> None:
    """Item 4: SIGSTOP for longer than the heartbeat timeout. The commands sent then
    are `unknown` (never `error`), and Blender runs them after SIGCONT: the record takes
    their real outcome, marked late, and a watch event says so."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "frozen")["session_id"]
    assert programs.blender is not None
    port, token = control(programs)
    os.killpg(programs.blender.process.pid, signal.SIGSTOP)
    try:
        line = json.dumps({"id": 1, "op": "session.command", "token": token, "params": {
            "session_id": session_id, "type": "create_object",
            "params": {"kind": "cube", "name": "WhileFrozen"}}}).encode() + b"\n"  # fmt: skip
        refused = raw_request(port, line)
        assert refused["error"]["code"] == "blender_unavailable"
        assert "stopped answering" in refused["error"]["message"]
        (command,) = commands_of(programs, session_id)
        assert command["status"] == "unknown"
    finally:
        os.killpg(programs.blender.process.pid, signal.SIGCONT)
    wait_for(
        lambda: commands_of(programs, session_id)[0]["status"] == "success",
        "the late outcome in the record",
    )
    (command,) = commands_of(programs, session_id)
    assert command["late"] is True and command["result"]["name"] == "WhileFrozen"
    assert programs.json("status")["blender"]["connected"]
    after = programs.json("cmd", "create_object", "kind=cone", "name=AfterThaw")
    assert after["seq"] == 2
    log = "".join(programs.daemon_log)
    assert '"link_silent"' in log and '"command_late"' in log


def test_restore_lists_every_command_it_could_not_account_for(programs: Programs) -> None:
    """Item 4: a command whose outcome never came stays `unknown`, and a replay says it
    skipped it rather than guess."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "lost")["session_id"]
    programs.cli("cmd", "create_object", "kind=cube", "name=Known")
    assert programs.blender is not None
    port, token = control(programs)
    os.killpg(programs.blender.process.pid, signal.SIGSTOP)
    line = json.dumps({"id": 1, "op": "session.command", "token": token, "params": {
        "session_id": session_id, "type": "create_object",
        "params": {"kind": "cube", "name": "Unknown"}}}).encode() + b"\n"  # fmt: skip
    raw_request(port, line)
    programs.blender.kill()  # it never answers now
    programs.json("close", session_id)
    programs.start_blender()
    programs.wait_connected()
    restored = programs.json("restore", session_id, "--path", "replay")
    skipped = {s["name"]: s["reason"] for s in restored["skipped"]}
    assert "#2 create_object" in skipped and "unknown" in skipped["#2 create_object"]
    assert "Known" in restored["created"] and "Unknown" not in restored["created"]


def test_imported_old_sessions_survive_the_next_starts_cleanup(
    programs: Programs, tmp_path: Path
) -> None:
    """Item 6: age counts from the import, not from the archive's closed_at."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "ancient")["session_id"]
    closed = programs.json("close", session_id)
    record_path = Path(closed["path"])
    record = json.loads(record_path.read_text())
    record["data"]["closed_at"] = time.time() - 400 * 86400  # closed 400 days ago
    record_path.write_text(json.dumps(record))
    archive = tmp_path / "ancient.tar.gz"
    programs.json("export", session_id, "-o", str(archive))
    programs.json("delete", session_id)
    programs.json("import", str(archive))
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGTERM)
    programs.daemon.wait(20)
    programs.start_daemon("--cleanup-interval-hours", "1", "--cleanup-older-than-days", "90")
    programs.wait_connected()
    assert [s["name"] for s in programs.json("list")["sessions"]] == ["ancient"]


# --- crash, hang, wedge ---------------------------------------------------------------


def test_show_of_a_record_over_16_mib_works_through_the_cli(programs: Programs) -> None:
    """Item 9: every record the daemon writes is readable by its own tools."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "huge")["session_id"]
    port, token = control(programs)
    names = [f"Object-{n:06d}-{'x' * 40}" for n in range(110_000)]  # ~6.5 MB of params
    for request_id in range(3):
        line = json.dumps({"token": token, "id": request_id, "op": "session.command",
                           "params": {"session_id": session_id, "type": "select_objects",
                                      "params": {"names": names}}}).encode() + b"\n"  # fmt: skip
        assert raw_request(port, line)["error"]["code"] == "not_found"  # recorded all the same
    closed = programs.json("close", session_id)
    assert Path(closed["path"]).stat().st_size > 16 * 1024 * 1024
    shown = programs.cli("show", session_id)
    assert "select_objects" in shown.stdout and shown.stderr == ""
    as_json = json.loads(programs.cli("--json", "show", session_id).stdout)
    assert len(as_json["data"]["commands"]) == 3


# --- resource exhaustion --------------------------------------------------------------


def test_idle_connections_cannot_lock_clients_out(programs: Programs) -> None:
    """Item 10: 400 idle connections (over the cap of 256): the extra ones are refused
    at once, the idle ones dropped at the auth deadline, the log says so once per
    interval, and clients get in again."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    port, _ = control(programs)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=BOUND_S) for _ in range(400)]
    try:
        wait_for(lambda: programs.cli("status", check=False).returncode == 0, "a client served")
        assert programs.daemon is not None and programs.daemon.poll() is None
        log = [line for line in programs.daemon_log if '"connections_refused"' in line]
        assert 1 <= len(log) <= 3, log  # once per 10 s interval, not per connection
    finally:
        for sock in idle:
            sock.close()


# --- security -------------------------------------------------------------------------


def test_links_and_open_permissions_in_the_data_dir_are_refused(
    programs: Programs, tmp_path: Path
) -> None:
    """Item 13: a control.token link is never followed (nor chmod-ed); a data dir others
    can write is refused with the command that fixes it; a restored/ link never
    redirects a restore."""
    victim = tmp_path / "victim"
    victim.write_text("somebody's file")
    victim.chmod(0o644)
    programs.data_dir.mkdir(mode=0o700)
    (programs.data_dir / "control.token").symlink_to(victim)
    refused = _daemon_exit(programs)
    assert refused.returncode == 1 and "symbolic link" in refused.stderr
    assert (victim.stat().st_mode & 0o777) == 0o644 and victim.read_text() == "somebody's file"
    (programs.data_dir / "control.token").unlink()
    programs.data_dir.chmod(0o777)
    refused = _daemon_exit(programs)
    assert refused.returncode == 1 and f"chmod 700 {programs.data_dir}" in refused.stderr
    programs.data_dir.chmod(0o700)

    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "linked")["session_id"]
    programs.cli("cmd", "create_object", "kind=cube", "name=Kept")
    programs.json("close", session_id)
    outside = tmp_path / "outside"
    outside.mkdir()
    restored_dir = programs.data_dir / "restored"
    if restored_dir.exists():
        restored_dir.rmdir()
    restored_dir.symlink_to(outside)
    restore = programs.cli("restore", session_id, "--path", "blend", check=False)
    assert restore.returncode == 1 and "symbolic link" in restore.stderr
    assert list(outside.iterdir()) == []


def _daemon_exit(programs: Programs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "blender-sessiond"), "--data-dir", str(programs.data_dir), "--control-port",
         "0", "--addon-port", str(programs.addon_port)],
        env=programs.env, capture_output=True, text=True, timeout=BOUND_S,
    )  # fmt: skip


# --- clear errors ---------------------------------------------------------------------


def test_import_of_a_non_archive_or_a_bad_manifest_is_one_clear_line(
    programs: Programs, tmp_path: Path
) -> None:
    """Item 14."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    not_archive = tmp_path / "notes.txt"
    not_archive.write_text("hello")
    result = programs.cli("import", str(not_archive), check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "invalid_params" in result.stderr and "not a readable tar.gz" in result.stderr
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        body = b'{"format": 1, "sessions": "not a list"}'
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        import io

        tar.addfile(info, io.BytesIO(body))
    result = programs.cli("import", str(bad), check=False)
    assert result.returncode == 1 and "invalid_params" in result.stderr
    assert "manifest.json is not valid" in result.stderr


# --- hostile input --------------------------------------------------------------------


def test_what_is_accepted_is_readable_back_through_close_restart_and_show(
    programs: Programs,
) -> None:
    """Items 16 and 17: one nesting limit, checked at the edge; values that could not be
    read back (too deep, invalid UTF-8, 1e400, huge integers, lone surrogates) refused
    with invalid_params; the deepest accepted value survives close, restart and show."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "deep")["session_id"]
    port, token = control(programs)

    def set_data(value: bytes) -> dict[str, Any]:
        line = (b'{"id": 1, "op": "session.set_data", "token": "%s", "params": '
                b'{"session_id": "%s", "key": "k", "value": %s}}\n'
                % (token.encode(), session_id.encode(), value))  # fmt: skip
        return raw_request(port, line)

    deepest = b"[" * 64 + b"1" + b"]" * 64
    for refused in (b"[" * 65 + b"1" + b"]" * 65, b"[" * 988 + b"]" * 988, b'"\xff"',
                    b'"\xed\xa0\x80"', b"1e400", b"9" * 4301, b'"\\ud800"'):  # fmt: skip
        reply = set_data(refused)
        assert reply["error"]["code"] in ("invalid_params", "bad_request"), (refused[:20], reply)
    assert set_data(deepest)["ok"]
    assert programs.daemon is not None
    programs.daemon.send_signal(signal.SIGKILL)  # recovery reads the journal back
    programs.daemon.wait()
    programs.start_daemon()
    programs.wait_connected()
    closed = programs.json("close", session_id)
    assert programs.json("list")["damaged"] == []
    assert json.loads(Path(closed["path"]).read_text())["data"]["data"]["k"] == json.loads(deepest)
    programs.daemon.send_signal(signal.SIGTERM)
    programs.daemon.wait(20)
    programs.start_daemon()
    assert programs.json("show", session_id)["data"]["data"]["k"] == json.loads(deepest)


def test_invalid_utf8_in_an_unknown_param_is_refused_before_blender(programs: Programs) -> None:
    """Item 19: refused at the edge at once, not forwarded for the addon to choke on."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "utf8")["session_id"]
    port, token = control(programs)
    line = (b'{"id": 3, "op": "session.command", "token": "%s", "params": {"session_id": "%s",'
            b' "type": "get_scene_info", "params": {"junk": "\xff\xfe"}}}\n'
            % (token.encode(), session_id.encode()))  # fmt: skip
    began = time.monotonic()
    reply = raw_request(port, line, timeout_s=10)
    assert reply["id"] == 3 and reply["error"]["code"] == "invalid_params"
    assert time.monotonic() - began < 5
    assert commands_of(programs, session_id) == []  # it took no seq


def test_proxy_survives_a_lone_surrogate_and_racing_clients_share_one_session(
    programs: Programs,
) -> None:
    """Items 15a and 22: the unauthenticated proxy line that killed the daemon, then
    four clients racing to be the first command: one session, not four."""
    programs.start_blender()
    programs.start_daemon("--proxy-port", "0")
    programs.wait_connected()
    proxy_port = int(programs.json("status")["proxy"].rsplit(":", 1)[1])
    for line in (b'{"type":"","params":{"":"\\ud800"}}\n',
                 b'{"type":"create_object","params":{"kind":"\xed\xa0\x80"}}\n'):  # fmt: skip
        reply = raw_request(proxy_port, line)
        assert reply["status"] == "error"
    assert programs.daemon is not None and programs.daemon.poll() is None
    barrier = threading.Barrier(4)
    replies: list[dict[str, Any]] = []

    def racer(number: int) -> None:
        barrier.wait()
        params = {"kind": "cube", "name": f"Racer{number}"}
        line = json.dumps({"type": "create_object", "params": params}).encode()
        replies.append(raw_request(proxy_port, line + b"\n"))

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND_S)
    assert all(reply["status"] == "success" for reply in replies)
    (session,) = programs.json("status")["open_sessions"]
    assert session["command_count"] == 4


def test_many_unauthenticated_connections_hold_little_daemon_memory(programs: Programs) -> None:
    """Item 11, measured on the real process: 48 connections each sending 60 KiB and
    never a newline (before, each could make the daemon hold 16 MiB)."""
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    assert programs.daemon is not None
    port, _ = control(programs)

    def rss_kib() -> int:
        status = Path(f"/proc/{programs.daemon.pid}/status").read_text()  # type: ignore[union-attr]
        return int(
            next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
        )

    before = rss_kib()
    socks = []
    for _ in range(48):
        sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
        with contextlib.suppress(OSError):  # refused past 64 KiB: that is the point
            sock.sendall(b"{" + b" " * (1 << 20))
        socks.append(sock)
    grown_kib = rss_kib() - before
    for sock in socks:
        sock.close()
    assert grown_kib < 48 * 1024, grown_kib  # under 1 MiB each (was ~15 MiB each)
    assert programs.json("status")["pid"] == programs.daemon.pid
