"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, a new
cluster (`initdb`) in a temp dir, run as an unprivileged user (the `postgres` account
when the tests run as root: PostgreSQL refuses root), on a free loopback port, stopped
and removed after. Tests that need it skip where the binaries are missing, except in
CI (CI=true), where that is a failure (.ci/run installs them)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from . import blender_procs
from .programs import Programs, free_port


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Cluster:
    def __init__(self, root: Path, *, durable: bool = False) -> None:
        binaries = bin_dir()
        assert binaries is not None
        self.bin = binaries
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.durable = durable  # fsync on, as a real server (the tests: off, for speed)

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, str(self.bin / tool), *args],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
            for parent in self.root.parents:  # the postgres account must reach it
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.start_again()
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "bss")

    def start_again(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        if not self.durable:  # a test cluster: speed over durability
            options += " -c fsync=off -c full_page_writes=off"
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "60",
                 "-l", str(self.root / "server.log"), "start")  # fmt: skip

    def processes(self) -> list[psutil.Process]:
        """The server: its postmaster and every process it started."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def freeze(self) -> list[psutil.Process]:
        """SIGSTOP the whole server: connections stay open and nothing answers (a hung
        database, a network that drops packets). Returns what to thaw."""
        frozen = self.processes()
        for process in frozen:
            process.suspend()
        return frozen

    def running(self) -> bool:
        status = subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        return status.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/bss"


@contextlib.contextmanager
def two_daemons(
    tmp_path: Path, postgres: Cluster, *extra: str
) -> Iterator[tuple[Programs, Programs]]:
    """Daemons A and B, each with its own headless Blender and data dir, sharing the
    database (`--store`), connected; stopped after."""
    a, b = Programs(tmp_path / "a"), Programs(tmp_path / "b")
    try:
        for daemon in (a, b):
            daemon.start_blender()
            daemon.start_daemon("--store", postgres.url, *extra)
            daemon.wait_connected()
        yield a, b
    finally:
        a.stop()
        b.stop()


def journal_rows(postgres: Cluster, session_id: str) -> list[dict[str, Any]]:
    """A session's journal lines in the database, in order, decoded."""
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT line::text FROM journal WHERE session_id = %s ORDER BY line_no",
            (session_id,),
        ).fetchall()
    return [json.loads(row[0]) for row in rows]


def wait_until(done: Callable[[], object], what: str, bound_s: float = 60.0) -> None:
    """Until `done()`, bounded; each look is a database, CLI or daemon round trip."""
    deadline = time.monotonic() + bound_s
    while not done():
        assert time.monotonic() < deadline, f"{what} never happened within {bound_s} s"


@pytest.fixture
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    blender_procs.require(bin_dir() is not None, "Debian's postgresql (apt-get install postgresql)")
    cluster = Cluster(tmp_path_factory.mktemp("postgres") / "cluster")
    cluster.start()
    try:
        yield cluster
    finally:
        if cluster.running():  # else a test stopped it and failed before starting it again
            try:
                cluster.stop()
            except subprocess.CalledProcessError:
                cluster.stop("immediate")
