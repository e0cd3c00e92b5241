"""Starting real Blenders for tests: the bpy module headless (pump loop) and Debian's
blender binary under xvfb-run (timer loop). Tests that need one skip where it is
missing, except in CI (CI=true), where a missing Blender is a failure."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from blender_addon.headless import READY_LINE

ADDON_DIR = Path(__file__).resolve().parent.parent / "blender_addon"
# Bound for a Blender to start and say it listens (bpy module ~2 s, GUI ~5 s here).
START_TIMEOUT_S = 90.0
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing, and in CI that is a failure (see .ci/run)")
    pytest.skip(f"{what} is not installed here")


def have_bpy() -> bool:
    return importlib.util.find_spec("bpy") is not None


def have_gui_blender() -> bool:
    return shutil.which("blender") is not None and shutil.which("xvfb-run") is not None


def blender_env(home: Path) -> dict[str, str]:
    """Keep Blender out of the user's config: HOME and its resource dirs point at `home`."""
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        BLENDER_USER_RESOURCES=str(home / "blender"),
        BLENDER_USER_CONFIG=str(home / "blender" / "config"),
        BLENDER_USER_SCRIPTS=str(home / "blender" / "scripts"),
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class BlenderProcess:
    process: subprocess.Popen[str]
    port: int
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def stop(self) -> int:
        """SIGTERM to the whole process group (xvfb-run leaves Xvfb and Blender behind
        if only it is told), bounded; returns the leader's exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                # Stuck: ask for every thread's stack (headless.py registers SIGUSR1),
                # so the failure shows where, then kill.
                with contextlib.suppress(OSError):
                    os.killpg(self.process.pid, signal.SIGUSR1)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(2)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would: the whole process group (a launcher and its Blender)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _pump_output(proc: BlenderProcess) -> None:
    assert proc.process.stdout is not None
    for line in proc.process.stdout:
        proc.output.append(line)
        proc.lines.put(line)
    proc.lines.put("")  # EOF


def start(command: list[str], env: dict[str, str], ready: str = READY_LINE) -> BlenderProcess:
    """Start a Blender and wait (bounded) for the addon's ready line; parse its port."""
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    proc = BlenderProcess(process, port=0)
    threading.Thread(target=_pump_output, args=(proc,), daemon=True).start()
    while True:
        try:
            line = proc.lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            proc.kill()
            raise RuntimeError(
                f"Blender did not start within {START_TIMEOUT_S} s: {''.join(proc.output)[-2000:]}"
            ) from None
        if not line:
            raise RuntimeError(f"Blender exited before serving: {''.join(proc.output)[-3000:]}")
        if ready in line:
            if ready == READY_LINE:
                proc.port = int(line.split(READY_LINE)[1].split()[0].rsplit(":", 1)[1])
            return proc


def headless_command(*addon_args: str) -> list[str]:
    return [sys.executable, "-m", "blender_addon.headless", "--port", "0", *addon_args]


def xvfb_blender(*blender_args: str) -> list[str]:
    """Debian's GUI Blender, factory settings, on a virtual screen."""
    return ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "blender", "--factory-startup",
            *blender_args]  # fmt: skip


def gui_command(*addon_args: str, extra: list[str] | None = None) -> list[str]:
    """A GUI Blender serving the addon on a free port, timer-driven."""
    script = str(ADDON_DIR / "headless.py")
    return xvfb_blender(*(extra or []), "--python", script, "--", "--gui", "--port", "0",
                        *addon_args)  # fmt: skip
