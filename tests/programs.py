"""The real programs for end-to-end tests: a headless Blender (the bpy module, via
`blender-session blender`), `blender-sessiond`, and `blender-session` runs."""

from __future__ import annotations

import collections
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from . import blender_procs

BIN = Path(sys.executable).parent
# Bound on waiting for the daemon to see a (new) Blender; heartbeats here are 0.2 s.
CONNECT_TIMEOUT_S = 60.0
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Programs:
    heartbeat_interval_s = 0.2
    heartbeat_timeout_s = 2.0

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.home = tmp_path / "home"
        self.env = blender_procs.blender_env(self.home)
        self.addon_port = free_port()
        self.blender: blender_procs.BlenderProcess | None = None
        self.daemon: subprocess.Popen[str] | None = None
        self.daemon_log: collections.deque[str] = collections.deque(maxlen=2000)

    def start_blender(self, *extra: str, empty_scene: bool = True) -> None:
        command = [
            str(BIN / "blender-session"),
            "blender",
            "--port",
            str(self.addon_port),
            *(["--factory-scene"] if empty_scene else []),  # else: cube, light, camera
            *extra,
        ]
        self.blender = blender_procs.start(command, self.env)

    def start_daemon(self, *extra: str) -> None:
        endpoint = self.data_dir / "control.json"
        endpoint.unlink(missing_ok=True)
        self.daemon = subprocess.Popen(
            [
                str(BIN / "blender-sessiond"),
                "--data-dir",
                str(self.data_dir),
                "--addon-port",
                str(self.addon_port),
                "--control-port",
                "0",
                "--heartbeat-interval",
                str(self.heartbeat_interval_s),
                "--heartbeat-timeout",
                str(self.heartbeat_timeout_s),
                "--log-format",
                "json",
                "--web-port",
                "0",
                *extra,
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.daemon.stderr is not None
        started = threading.Event()
        threading.Thread(
            target=self._drain_log, args=(self.daemon.stderr, started), daemon=True
        ).start()
        # Bounded by the daemon's own start-up; a daemon that dies sets it too.
        if not started.wait(START_TIMEOUT_S) or self.daemon.poll() is not None:
            raise RuntimeError(f"blender-sessiond did not start: {list(self.daemon_log)[-20:]}")

    def _drain_log(self, stream: IO[str], started: threading.Event) -> None:
        """Keep reading the daemon's log, so a full pipe never blocks the daemon."""
        for line in stream:
            self.daemon_log.append(line)
            if '"daemon_started"' in line:
                started.set()
        started.set()

    def cli(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / "blender-session"), "--data-dir", str(self.data_dir), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.cli("--json", *args).stdout)

    def wait_connected(self, version: str | None = None) -> dict[str, Any]:
        """Until the daemon is linked to Blender (`version`, if given) and has recovered
        what a crash left open."""
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:  # each status call is a full CLI run: its own pacing
            status = self.json("status")
            if (
                status["blender"]["connected"]
                and (version is None or status["blender"]["blender_version"] == version)
                and not status["recovering"]
            ):
                return status
        raise AssertionError(f"daemon never connected to Blender: {status}")

    def stop(self) -> None:
        if self.blender is not None:
            self.blender.stop()
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(20)


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Programs]:
    blender_procs.require(blender_procs.have_bpy(), "the bpy module (pip install bpy==5.0.1)")
    programs = Programs(tmp_path)
    yield programs
    programs.stop()
