"""Benchmarks against a real Blender; prints one JSON document.

    ./scripts/bench            # full run (a few minutes)
    ./scripts/bench --smoke    # tiny counts, so CI keeps this code from rotting

Cases (each comparison is measured in the same run):
- roundtrip: a trivial command (get_scene_info on an empty scene), headless Blender,
  directly to the addon vs through the daemon, one at a time and 8 / 64 in flight.
- create_1000: 1,000 cubes through bpy.ops vs through the addon's data-API command.
- gui: the same trivial command in Debian's GUI Blender under xvfb (timer path):
  one at a time, 4 clients, 64 in flight on one connection.
- lifecycle: sessions of 10 / 1,000 / 10,000 objects: close time (final snapshot,
  .blend, thumbnail, record) and restore time through each path (.blend, state, replay).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import blender_procs  # noqa: E402

BIN = Path(sys.executable).parent
TRIVIAL = {"type": "get_scene_info"}


class LineClient:
    """NDJSON over a blocking socket: enough for timing, nothing clever."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def run_load(port: int, request: bytes, total: int, in_flight: int) -> dict[str, float]:
    """Send `total` copies of `request`, keeping `in_flight` outstanding; time each."""
    client = LineClient(port)
    latencies: list[float] = []
    sent_at: list[float] = []
    try:
        began = time.perf_counter()
        sent = 0
        while sent < min(in_flight, total):
            sent_at.append(time.perf_counter())
            client.sock.sendall(request)
            sent += 1
        for received in range(total):
            line = client.reader.readline()
            if not line:
                raise RuntimeError("connection closed during the benchmark")
            if b'"error"' in line[:40] or b'"ok":false' in line[:40]:
                raise RuntimeError(f"request failed: {line[:300]!r}")
            latencies.append(time.perf_counter() - sent_at[received])
            if sent < total:
                sent_at.append(time.perf_counter())
                client.sock.sendall(request)
                sent += 1
        elapsed = time.perf_counter() - began
    finally:
        client.close()
    latencies.sort()
    return {
        "requests": total,
        "in_flight": in_flight,
        "seconds": round(elapsed, 4),
        "per_second": round(total / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 3),
    }


def run_clients(port: int, request: bytes, total_each: int, clients: int) -> dict[str, float]:
    results: list[dict[str, float]] = []
    threads = [
        threading.Thread(target=lambda: results.append(run_load(port, request, total_each, 1)))
        for _ in range(clients)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {
        "clients": clients,
        "requests": total_each * clients,
        "seconds": round(elapsed, 4),
        "per_second": round(total_each * clients / elapsed, 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in results), 3),
    }


def start_daemon(
    data_dir: Path,
    addon_port: int,
    env: dict[str, str],
    *,
    log_level: str = "warning",
    extra: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[str], int, str]:
    daemon = subprocess.Popen(
        [
            str(BIN / "blender-sessiond"),
            "--data-dir",
            str(data_dir),
            "--addon-port",
            str(addon_port),
            "--control-port",
            "0",
            "--log-format",
            "json",
            "--log-level",
            log_level,
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    endpoint = data_dir / "control.json"
    deadline = time.monotonic() + 60
    while not endpoint.exists():
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise RuntimeError("blender-sessiond did not start")
        time.sleep(0.05)
    port = json.loads(endpoint.read_text())["port"]
    token = (data_dir / "control.token").read_text().strip()
    return daemon, port, token


def control_call(port: int, token: str, op: str, params: dict[str, Any]) -> Any:
    client = LineClient(port)
    try:
        client.sock.sendall(
            json.dumps({"id": 1, "op": op, "params": params, "token": token}).encode() + b"\n"
        )
        reply = json.loads(client.reader.readline())
    finally:
        client.close()
    if not reply["ok"]:
        raise RuntimeError(reply["error"])
    return reply["result"]


def wait_connected(port: int, token: str) -> None:
    deadline = time.monotonic() + 60
    while not control_call(port, token, "status", {})["blender"]["connected"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon did not connect to Blender")
        time.sleep(0.05)


def bench_headless(counts: dict[str, int], workdir: Path) -> dict[str, Any]:
    env = blender_procs.blender_env(workdir / "home")
    blender = blender_procs.start(
        blender_procs.headless_command("--factory-scene", "--allow-execute-code"), env
    )
    daemon, control_port, token = start_daemon(workdir / "data", blender.port, env)
    try:
        wait_connected(control_port, token)
        session_id = control_call(control_port, token, "session.open", {"name": "bench"})[
            "session_id"
        ]
        direct = json.dumps({"id": 1, **TRIVIAL}).encode() + b"\n"
        through = (
            json.dumps(
                {
                    "id": 1,
                    "op": "session.command",
                    "token": token,
                    "params": {"session_id": session_id, **TRIVIAL},
                }
            ).encode()
            + b"\n"
        )
        roundtrip: dict[str, Any] = {}
        for in_flight in (1, 8, 64):
            total = counts["one"] if in_flight == 1 else counts["pipelined"]
            run_load(blender.port, direct, min(total, 200), in_flight)  # warm up
            a = run_load(blender.port, direct, total, in_flight)
            b = run_load(control_port, through, total, in_flight)
            roundtrip[f"in_flight_{in_flight}"] = {
                "direct": a,
                "daemon": b,
                "daemon_over_direct_time": round(a["per_second"] / b["per_second"], 3),
            }
        create = bench_create(blender.port, counts["objects"])
        control_call(control_port, token, "session.close", {"session_id": session_id})
        return {"roundtrip": roundtrip, "create_objects": create}
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
        blender.stop()


def bench_create(port: int, count: int) -> dict[str, Any]:
    """`count` cubes via bpy.ops (execute_code) vs via create_object (data API)."""
    client = LineClient(port)
    try:
        code = (
            "import bpy, time\nstarted = time.perf_counter()\n"
            f"for i in range({count}):\n    bpy.ops.mesh.primitive_cube_add(location=(i, 0, 0))\n"
            "print(time.perf_counter() - started)"
        )
        client.sock.sendall(
            json.dumps({"id": 1, "type": "execute_code", "params": {"code": code}}).encode() + b"\n"
        )
        reply = json.loads(client.reader.readline())
        ops_s = float(reply["result"]["result"])
        requests = b"".join(
            json.dumps(
                {
                    "id": i,
                    "type": "create_object",
                    "params": {"kind": "cube", "name": f"D{i}", "location": [i, 1, 0]},
                }
            ).encode()
            + b"\n"
            for i in range(count)
        )
        began = time.perf_counter()
        client.sock.sendall(requests)
        for _ in range(count):
            client.reader.readline()
        data_api_s = time.perf_counter() - began
    finally:
        client.close()
    return {
        "objects": count,
        "bpy_ops_seconds": round(ops_s, 3),
        "data_api_seconds_end_to_end": round(data_api_s, 3),
        "ops_over_data_api": round(ops_s / data_api_s, 1),
    }


def bench_lifecycle(sizes: list[int], workdir: Path) -> dict[str, Any]:
    """Close and restore times (each restore path) for sessions of N objects."""
    env = blender_procs.blender_env(workdir / "life-home")
    blender = blender_procs.start(blender_procs.headless_command("--factory-scene"), env)
    daemon, control_port, token = start_daemon(workdir / "life-data", blender.port, env)
    results: dict[str, Any] = {}
    try:
        wait_connected(control_port, token)
        for size in sizes:
            session_id = control_call(control_port, token, "session.open", {})["session_id"]
            create = (
                json.dumps(
                    {
                        "id": 1,
                        "op": "session.command",
                        "token": token,
                        "params": {
                            "session_id": session_id,
                            "type": "create_object",
                            "params": {"kind": "cube", "location": [1, 2, 3]},
                        },
                    }
                ).encode()
                + b"\n"
            )
            began = time.perf_counter()
            run_load(control_port, create, size, 64)
            created_s = time.perf_counter() - began
            began = time.perf_counter()
            closed = control_call(control_port, token, "session.close", {"session_id": session_id})
            close_s = time.perf_counter() - began
            sessions_dir = workdir / "life-data" / "sessions"
            entry: dict[str, Any] = {
                "create_through_daemon_s": round(created_s, 3),
                "close_s": round(close_s, 3),
                "record_bytes": Path(closed["path"]).stat().st_size,
                "blend_bytes": (sessions_dir / f"{session_id}.blend").stat().st_size,
                "restore_s": {},
            }
            for path in ("blend", "state", "replay"):
                began = time.perf_counter()
                restored = control_call(
                    control_port, token, "session.restore", {"session_id": session_id, "path": path}
                )
                entry["restore_s"][path] = round(time.perf_counter() - began, 3)
                control_call(
                    control_port, token, "session.close", {"session_id": restored["session_id"]}
                )
            results[str(size)] = entry
        return results
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        blender.stop()


def bench_gui(counts: dict[str, int], workdir: Path) -> dict[str, Any]:
    if not blender_procs.have_gui_blender():
        return {"skipped": "Debian's blender and xvfb-run are not installed"}
    env = blender_procs.blender_env(workdir / "gui-home")
    blender = blender_procs.start(blender_procs.gui_command(), env)
    try:
        request = json.dumps({"id": 1, **TRIVIAL}).encode() + b"\n"
        run_load(blender.port, request, 50, 1)  # warm up: the window is drawing at start
        return {
            "one_at_a_time": run_load(blender.port, request, counts["gui"], 1),
            "four_clients": run_clients(blender.port, request, counts["gui"], 4),
            "in_flight_64": run_load(blender.port, request, counts["gui"] * 4, 64),
        }
    finally:
        blender.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, for CI")
    args = parser.parse_args()
    counts = (
        {"one": 50, "pipelined": 200, "objects": 20, "gui": 20}
        if args.smoke
        else {"one": 3000, "pipelined": 20000, "objects": 1000, "gui": 500}
    )
    with tempfile.TemporaryDirectory(prefix="bss-bench-") as tmp:
        workdir = Path(tmp)
        report = {
            "environment": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "smoke": args.smoke,
                "gui_blender": shutil.which("blender"),
            },
            "headless": bench_headless(counts, workdir),
            "gui": bench_gui(counts, workdir),
            "lifecycle": bench_lifecycle([10, 50] if args.smoke else [10, 1000, 10000], workdir),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
