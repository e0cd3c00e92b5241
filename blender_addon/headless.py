"""Run the addon in a Blender with no event loop (the `bpy` module, `blender -b`), or
start it in a GUI Blender, from the command line:

    python -m blender_addon.headless --port 9876          # bpy module in this Python
    blender -b --python blender_addon/headless.py -- --port 9876
    blender --python blender_addon/headless.py -- --gui --port 9876

Headless, the main thread runs the pump loop until SIGINT or SIGTERM. With --gui the
timer drives the queue and Blender's own event loop runs as usual.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import threading

READY_LINE = "blender-scene-sessions addon listening on"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="blender_addon.headless", description="Serve the blender-scene-sessions addon."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9876, help="0 picks a free port")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="accept non-loopback peers (and a non-loopback --host)",
    )
    parser.add_argument(
        "--allow-execute-code",
        action="store_true",
        help="let clients run arbitrary Python in this Blender (off by default)",
    )
    parser.add_argument(
        "--gui",
        action="store_true",
        help="drive the queue from a bpy.app.timers timer (GUI Blender)",
    )
    parser.add_argument("--open", metavar="FILE.blend", help="open this .blend first")
    parser.add_argument(
        "--factory-scene",
        action="store_true",
        help="start from an empty scene (no default cube, light, camera)",
    )
    return parser.parse_args(argv)


def _blender_argv() -> list[str]:
    """Arguments meant for us: after `--` when run by the blender binary."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return sys.argv[1:]


def main(argv: list[str] | None = None) -> int:
    import bpy

    from . import runtime
    from .server import ServerSettings

    args = parse_args(_blender_argv() if argv is None else argv)
    if args.open:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.open))
    if args.factory_scene:
        for obj in list(bpy.data.objects):
            bpy.data.objects.remove(obj, do_unlink=True)
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        allow_execute_code=args.allow_execute_code,
    )
    try:
        running = runtime.start(settings, "timer" if args.gui else "pump")
    except OSError as error:
        print(
            f"blender-scene-sessions: cannot listen on {args.host}:{args.port}: {error}",
            file=sys.stderr,
            flush=True,
        )
        return 2
    print(
        f"{READY_LINE} {args.host}:{running.server.port} "
        f"(Blender {bpy.app.version_string}, {'timer' if args.gui else 'pump'} mode, "
        f"execute_code {'on' if args.allow_execute_code else 'off'})",
        flush=True,
    )
    if args.gui:
        # The whole addon, as when installed: the Sessions tab in the 3D view's sidebar
        # and its buttons (the server is already running: register() starts none).
        from . import ui

        ui.register()
        return 0  # Blender's event loop takes over; the timer drains the queue
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # `kill -USR1 <pid>` prints every thread's stack: for diagnosing a stuck Blender.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        running.pump_until(stop)
    finally:
        print("blender-scene-sessions addon stopping", flush=True)
        runtime.stop()
        print("blender-scene-sessions addon stopped", flush=True)
    if argv is None:
        # Run as a program: leave now. The server is closed and nothing is unsaved;
        # Blender's own exit handlers add nothing here and once kept a stopping
        # bpy-module process alive past the test's 20 s bound.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    if __package__:
        sys.exit(main())
    # Run as a script by the blender binary: import the package this file lives in.
    import importlib

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(here))
    package = importlib.import_module(os.path.basename(here))
    code = importlib.import_module(package.__name__ + ".headless").main()
    if "--gui" not in _blender_argv():
        sys.exit(code)
