"""A disk that fails under the daemon: full or read-only while a session runs, a close
that fails, a start on a full disk. Clear `storage` errors, nothing acknowledged lost,
and the session fully working once the disk takes writes again."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.main import Daemon

from .fake_addon import FakeAddon
from .helpers import (
    AsyncClient,
    create_cube,
    local_store,
    ready_client,
    recorded_commands,
    running_daemon,
)
from .test_store import make_data


@pytest.mark.parametrize(
    ("errno", "strerror"),
    [(28, "No space left on device"), (30, "Read-only file system")],
    ids=["disk-full", "read-only"],
)
async def test_full_or_read_only_disk_clear_errors_nothing_lost_next_close_persists_all(
    daemon: Daemon,
    client: AsyncClient,
    fake: FakeAddon,
    monkeypatch: pytest.MonkeyPatch,
    errno: int,
    strerror: str,
) -> None:
    """ENOSPC or EROFS injected at the write calls (a real full disk: below, when root)."""
    import os as real_os

    from daemon.store import files, store

    real_atomic_write = store.atomic_write
    failing: set[bytes] = set()  # journal line kinds that hit a full disk

    class FullDiskOs:
        """`os` for the journal: a failing line gets half written, then the disk is full."""

        half_written = False

        def __getattr__(self, name: str) -> Any:
            return getattr(real_os, name)

        def write(self, fd: int, data: memoryview) -> int:
            if self.half_written:
                self.half_written = False
                raise OSError(errno, strerror)
            if any(kind in bytes(data) for kind in failing):
                self.half_written = True
                return real_os.write(fd, data[: len(data) // 2])
            return real_os.write(fd, data)

    def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
        if failing:
            raise OSError(errno, strerror, str(path))
        real_atomic_write(path, data, mode)

    monkeypatch.setattr(files, "os", FullDiskOs())
    monkeypatch.setattr(store, "atomic_write", atomic_write)
    session_id = (await client.ok("session.open"))["session_id"]

    def create(name: str) -> dict[str, Any]:
        return create_cube(session_id, name)

    await client.ok("session.command", create("Before"))
    failing.add(b'"kind":"done"')  # the outcome cannot be journaled: the command did run
    ran = await client.ok("session.command", create("Ran"))
    assert ran["status"] == "success" and "Ran" in fake.objects
    failing.add(b'"kind":"start"')  # nothing can be journaled: the command must not run
    code, message = await client.error("session.command", create("NotRun"))
    assert code == "storage" and strerror in message and "not sent to Blender" in message
    assert str(daemon.config.data_dir) in message and "free" in message
    assert "NotRun" not in fake.objects
    failing.add(b'"format":')  # the record's first line: close cannot write it either
    code, _ = await client.error("session.close", {"session_id": session_id})
    assert code == "storage"
    assert (await client.ok("session.list"))["sessions"][0]["status"] == "open"
    failing.clear()  # space was freed; the half lines were cut off, so this one follows cleanly
    await client.ok("session.command", create("After"))
    closed = await client.ok("session.close", {"session_id": session_id})
    commands = recorded_commands(closed)
    assert [(c["params"]["name"], c["status"]) for c in commands] == [
        ("Before", "success"),
        ("Ran", "success"),
        ("After", "success"),
    ]
    journal_left = list(daemon.store.sessions_dir.glob("*.journal"))
    assert journal_left == []  # removed only once the record was safely written


async def test_a_close_that_fails_for_any_reason_leaves_the_session_open_and_working(
    daemon: Daemon, client: AsyncClient, fake: FakeAddon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 7: not only a full disk: a bug while saving leaves the journal open."""
    session_id = (await client.ok("session.open"))["session_id"]
    await client.ok("session.command", create_cube(session_id, "Before"))

    def broken_writer(head: object) -> None:
        raise RuntimeError("the record could not be encoded")

    monkeypatch.setattr(daemon.store, "start_record", broken_writer)
    code, message = await client.error("session.close", {"session_id": session_id})
    assert code == "internal" and "could not be encoded" in message
    monkeypatch.undo()
    after = await client.ok("session.command", create_cube(session_id, "After"))
    assert after["seq"] == 2  # the session goes on: no "journal is not open"
    assert (await client.ok("session.list"))["sessions"][0]["status"] == "open"
    closed = await client.ok("session.close", {"session_id": session_id})
    assert [c["params"]["name"] for c in recorded_commands(closed)] == ["Before", "After"]


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` at `path` (root only)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    """Write until the file system is full."""
    with (directory / "filler").open("wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_daemon_starts_on_a_really_full_disk_serves_reads_and_refuses_writes(
    tmp_path: Path, fake: FakeAddon
) -> None:
    """Item 8, on a real full file system (a 2 MiB tmpfs, filled): the daemon starts,
    `list` and `show` work, and writes are refused with `storage`, naming the data dir
    and the free space."""
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        data_dir = disk / "data"
        store = local_store(data_dir)
        await store.save(make_data("scene-20260101-000000-0000abcd", name="kept"))
        async with running_daemon(data_dir, fake.port):
            pass  # a first start writes the token and control.json
        fill(disk)
        async with running_daemon(data_dir, fake.port) as daemon:
            client = await ready_client(daemon)
            listed = await client.ok("session.list")
            assert [s["name"] for s in listed["sessions"]] == ["kept"]
            shown = await client.ok("session.show", {"session_id": "kept"})
            assert shown["data"]["name"] == "kept"
            code, message = await client.error("session.open", {"name": "new"})
            assert code == "storage" and str(data_dir) in message
            assert "No space left" in message and "free" in message
            assert "no session was opened" in message and "kept in memory" not in message
            assert (await client.ok("status"))["pid"] > 0
            await client.aclose()
