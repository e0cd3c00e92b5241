"""`blender-session blender`: start a Blender with the addon serving, ready for the daemon.

By default the `bpy` module in this Python (headless, nothing else to install);
with `--blender PATH` that binary, headless, or with its window under `--gui`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

EXIT_USAGE = 2  # as the CLI's (cli.py)
# How long Blender gets to stop after SIGTERM before it is killed.
STOP_GRACE_S = 10.0


def addon_dir() -> Path:
    """The blender_addon package directory, found without importing it."""
    spec = importlib.util.find_spec("blender_addon")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the blender_addon package is not installed beside the daemon")
    return Path(next(iter(spec.submodule_search_locations)))


def blender_command(
    *,
    port: int,
    blender: str | None = None,
    gui: bool = False,
    allow_execute_code: bool = False,
    factory_scene: bool = False,
    host: str = "127.0.0.1",
) -> list[str]:
    addon_args = ["--host", host, "--port", str(port)]
    if allow_execute_code:
        addon_args.append("--allow-execute-code")
    if factory_scene:
        addon_args.append("--factory-scene")
    if blender is None:
        if gui:
            raise ValueError("--gui needs a Blender binary: pass --blender PATH")
        if importlib.util.find_spec("bpy") is None:
            raise FileNotFoundError(
                "the bpy module is not installed in this Python; run: pip install bpy==5.0.1 "
                "(Python 3.11), or pass --blender PATH"
            )
        return [sys.executable, "-m", "blender_addon.headless", *addon_args]
    script = str(addon_dir() / "headless.py")
    mode = ["--gui"] if gui else []
    background = [] if gui else ["-b"]
    return [blender, *background, "--factory-startup", "--python", script, "--", *mode, *addon_args]


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM if the launcher dies, even by
    SIGKILL, so no Blender is left holding the port."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def run(command: list[str]) -> int:
    """Run Blender in the foreground; stop it cleanly on Ctrl-C or SIGTERM."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    child = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)

    def forward(signum: int, frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()  # a forwarded signal stops the child, then this returns
    finally:
        if child.poll() is None:
            try:
                child.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(args: argparse.Namespace) -> int:
    """The `blender` subcommand: exit 2 for a Blender that cannot be used as asked."""
    try:
        command = blender_command(
            port=args.port,
            blender=args.blender,
            gui=args.gui,
            allow_execute_code=args.allow_execute_code,
            factory_scene=args.factory_scene,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"blender-session: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"starting Blender for the addon on 127.0.0.1:{args.port}: {' '.join(command)}", flush=True
    )
    return run(command)
