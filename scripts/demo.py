"""The demo behind scripts/demo: the real programs, end to end, on free ports."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
READY = "blender-scene-sessions addon listening on"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("demo-data").resolve(),
        help="where the demo daemon keeps its sessions (default: ./demo-data)",
    )
    args = parser.parse_args()
    data_dir: Path = args.data_dir
    addon_port = free_port()
    home = Path(tempfile.mkdtemp(prefix="bss-demo-home-"))  # keep Blender out of ~/.config
    env = {
        **os.environ,
        "HOME": str(home),
        "BLENDER_USER_RESOURCES": str(home / "blender"),
        "PYTHONUNBUFFERED": "1",
    }

    def cli(*words: str) -> str:
        command = [str(BIN / "blender-session"), "--data-dir", str(data_dir), *words]
        print(f"$ blender-session {' '.join(words)}", flush=True)
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        print(result.stdout.rstrip() or result.stderr.rstrip(), flush=True)
        if result.returncode != 0:
            raise SystemExit(f"demo: blender-session {words[0]} failed")
        return result.stdout

    blender = subprocess.Popen(
        [str(BIN / "blender-session"), "blender", "--port", str(addon_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    daemon = None
    try:
        assert blender.stdout is not None
        for line in blender.stdout:
            if READY in line:
                print(line.rstrip(), flush=True)
                break
        else:
            raise SystemExit("demo: Blender did not start")
        daemon = subprocess.Popen(
            [
                str(BIN / "blender-sessiond"),
                "--data-dir",
                str(data_dir),
                "--addon-port",
                str(addon_port),
                "--control-port",
                "0",
                "--web-port",
                "0",
                "--log-format",
                "json",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert daemon.stderr is not None
        for line in daemon.stderr:
            if '"link_connected"' in line:
                break
        else:
            raise SystemExit("demo: the daemon did not connect to Blender")
        cli("status")
        session_id = json.loads(cli("--json", "open", "--name", f"demo-{int(time.time())}"))[
            "session_id"
        ]
        cli("cmd", "create_object", "kind=monkey", "name=Suzanne", "location=[0,0,1]")
        cli("cmd", "set_material", "object=Suzanne", "material=Gold", "color=[1,0.75,0.1,1]")
        cli("cmd", "transform_object", "name=Cube", "scale=[2,2,0.2]")
        cli("cmd", "select_objects", 'names=["Suzanne"]')
        closed = json.loads(cli("--json", "close", session_id))
        cli("list")
        print(f"\nsession record: {closed['path']}")
        return 0
    finally:
        for process in (daemon, blender):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(20)


if __name__ == "__main__":
    sys.exit(main())
