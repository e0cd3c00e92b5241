"""What every benchmark case uses: NDJSON load generation over blocking sockets, the
daemon as a subprocess, control calls, and process figures read from /proc."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests import blender_procs

BIN = Path(sys.executable).parent
TRIVIAL = {"type": "get_scene_info"}


class LineClient:
    """NDJSON over a blocking socket: enough for timing, nothing clever."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def call(self, request: dict[str, Any]) -> Any:
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(self.reader.readline())

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def line(request: dict[str, Any]) -> bytes:
    return json.dumps(request).encode() + b"\n"


def run_load(
    port: int, requests: bytes | Sequence[bytes], total: int, in_flight: int
) -> dict[str, Any]:
    """Send `total` requests (cycling through `requests`), keeping `in_flight`
    outstanding; time each from its send to its reply."""
    cycle = [requests] if isinstance(requests, bytes) else list(requests)
    client = LineClient(port)
    latencies: list[float] = []
    sent_at: list[float] = []
    try:
        began = time.perf_counter()
        sent = 0
        while sent < min(in_flight, total):
            sent_at.append(time.perf_counter())
            client.sock.sendall(cycle[sent % len(cycle)])
            sent += 1
        for received in range(total):
            reply = client.reader.readline()
            if not reply:
                raise RuntimeError("connection closed during the benchmark")
            if b'"error"' in reply[:40] or b'"ok":false' in reply[:40]:
                raise RuntimeError(f"request failed: {reply[:300]!r}")
            latencies.append(time.perf_counter() - sent_at[received])
            if sent < total:
                sent_at.append(time.perf_counter())
                client.sock.sendall(cycle[sent % len(cycle)])
                sent += 1
        elapsed = time.perf_counter() - began
    finally:
        client.close()
    return {
        "requests": total,
        "in_flight": in_flight,
        "seconds": round(elapsed, 4),
        "per_second": round(total / elapsed, 1),
        **percentiles_ms(latencies),
    }


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {}

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 3)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 3)}


def run_clients(port: int, request: bytes, total_each: int, clients: int) -> dict[str, Any]:
    """`clients` connections at once, each one request at a time."""
    results: list[dict[str, Any]] = []
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
        "p99_ms_worst_client": max(r["p99_ms"] for r in results),
        "per_second_per_client_min_max": [
            min(r["per_second"] for r in results),
            max(r["per_second"] for r in results),
        ],
    }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")


class Daemon:
    """blender-sessiond as a subprocess on a fresh data dir, control port 0."""

    def __init__(
        self,
        data_dir: Path,
        addon_port: int,
        env: dict[str, str],
        *,
        log_level: str = "warning",
        extra: Sequence[str] = (),
        source: Path | None = None,
        module: str | None = None,
    ) -> None:
        """`source`: run the daemon from this checkout instead of the installed one.
        `module`: run this module (from the repository) instead of blender-sessiond."""
        self.data_dir = data_dir
        program = [str(BIN / "blender-sessiond")]
        if source is not None:
            program = [sys.executable, "-m", "daemon.main"]
            env = {**env, "PYTHONPATH": str(source)}
        elif module is not None:
            program = [sys.executable, "-m", module]
            source = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            [
                *program,
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
                "--web-port",
                "0",
                *extra,
            ],
            env=env,
            cwd=source,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # an unread pipe would stall a chatty daemon
        )
        endpoint = data_dir / "control.json"
        deadline = time.monotonic() + 60
        while not endpoint.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("blender-sessiond did not start")
            time.sleep(0.05)
        self.port = json.loads(endpoint.read_text())["port"]
        self.token = (data_dir / "control.token").read_text().strip()
        self.wait_connected()

    def call(self, op: str, params: dict[str, Any] | None = None) -> Any:
        client = LineClient(self.port)
        try:
            reply = client.call({"token": self.token, "id": 1, "op": op, "params": params or {}})
        finally:
            client.close()
        if not reply["ok"]:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def command_line(
        self, session_id: str, type: str, params: dict[str, Any] | None = None
    ) -> bytes:
        body: dict[str, Any] = {"session_id": session_id, "type": type}
        if params is not None:
            body["params"] = params
        return line({"id": 1, "op": "session.command", "token": self.token, "params": body})

    def wait_connected(self) -> None:
        deadline = time.monotonic() + 60
        while not self.call("status")["blender"]["connected"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not connect to Blender")
            time.sleep(0.05)

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def blender_version(port: int) -> str:
    """What the addon at `port` says it runs in (its `hello`)."""
    client = LineClient(port)
    try:
        reply = client.call({"id": "v", "type": "hello", "params": {"client": "bench"}})
    finally:
        client.close()
    return str(reply.get("result", {}).get("blender_version", "unknown"))


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return round(int(row.split()[1]) / 1024, 1)
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_relay(kind: str, upstream: int) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.relay", "--kind", kind, "--upstream", str(upstream)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("RELAY "):
        process.kill()
        raise RuntimeError(f"relay did not start: {first!r}")
    return process, int(first.split()[1])


class Headless:
    """A headless Blender (the bpy module) serving the addon, with its own HOME."""

    def __init__(self, workdir: Path, name: str, *addon_args: str) -> None:
        self.env = blender_procs.blender_env(workdir / f"{name}-home")
        self.blender = blender_procs.start(
            blender_procs.headless_command("--factory-scene", *addon_args), self.env
        )
        self.port = self.blender.port

    def stop(self) -> None:
        self.blender.stop()
