"""Sessions in PostgreSQL (issue 18), against a throwaway PostgreSQL 15 cluster this
case starts (tests/postgres.py, with fsync on as a real server: the suite's is off)
and real headless Blenders:

- throughput: the same pipelined transforms (64 in flight, and one at a time) through
  a daemon on the local store and a daemon with `--store postgresql://` (each answer
  then waits for the database's commit), one Blender, alternated twice; the ratio;
- sizing: the database's rows and bytes per recorded command (journal rows, the
  journal table with its index), beside the local journal's bytes per command;
- many_open: 1,000 sessions opened one after another through a daemon on each store
  (named, so each name is checked across the fleet), then the store daemon's CPU while
  they all stay open and idle (leases renewed, journals watched);
- adopt: a 1,000-object session (one apply_state, a checkpoint, then 200 transforms
  after it) whose daemon is SIGKILLed; another daemon with its own Blender adopts it:
  the adopt call's time (the journal and checkpoint fetched, the scene brought back
  by checkpoint + replay), and how long the lease took to expire before that.
"""

from __future__ import annotations

import random
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.common import Daemon, Headless, cpu_seconds, ratio, run_load
from tests.postgres import Cluster, bin_dir

FULL = {"fleet_commands": 4000, "fleet_objects": 1000, "fleet_after": 200, "fleet_opens": 1000}
SMOKE = {"fleet_commands": 200, "fleet_objects": 50, "fleet_after": 20, "fleet_opens": 50}
TARGETS = {"postgresql_over_local_pipelined_min": 0.5}
LEASE_S = 2.0


def bench_fleet(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    if bin_dir() is None:
        return {"skipped": "no PostgreSQL binaries (apt-get install postgresql)"}
    cluster = Cluster(workdir / "pg", durable=True)
    cluster.start()
    try:
        return {
            "postgresql_fsync": "on (as a real server)",
            "throughput": _throughput(counts, workdir, cluster),
            "adopt": _adopt(counts, workdir, cluster),
            "many_open": _many_open(counts, workdir, cluster),
        }
    finally:
        cluster.stop()


def _moves(daemon: Daemon, session_id: str, objects: int) -> list[bytes]:
    rng = random.Random(5)
    return [
        daemon.command_line(
            session_id,
            "transform_object",
            {"name": f"O{rng.randrange(objects)}", "location": [rng.random() * 10, 0, 1]},
        )
        for _ in range(500)
    ]


def _objects(count: int) -> list[dict[str, Any]]:
    return [
        {"name": f"O{n}", "type": "MESH", "data_kind": "cube",
         "location": [n % 50, n // 50, 0.0], "rotation": [0.0, 0.0, 0.0], "scale": [1, 1, 1]}
        for n in range(count)
    ]  # fmt: skip


def _fill(daemon: Daemon, session_id: str, objects: int) -> None:
    made = daemon.call("session.command", {
        "session_id": session_id, "type": "apply_state",
        "params": {"objects": _objects(objects), "prune": False},
    })  # fmt: skip
    assert made["status"] == "success", made


def _throughput(counts: dict[str, Any], workdir: Path, cluster: Cluster) -> dict[str, Any]:
    blender = Headless(workdir, "fleet")
    local = Daemon(workdir / "fleet-local", blender.port, blender.env)
    shared = Daemon(workdir / "fleet-pg", blender.port, blender.env, extra=("--store", cluster.url))
    total = counts["fleet_commands"]
    try:
        sessions = {}
        for name, daemon in (("local", local), ("postgresql", shared)):
            sessions[name] = daemon.call("session.open", {"name": f"fleet {name}"})["session_id"]
            _fill(daemon, sessions[name], 100)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            "local": {"64": [], "1": []}, "postgresql": {"64": [], "1": []}
        }  # fmt: skip
        cpu: dict[str, dict[str, float]] = {"local": {}, "postgresql": {}}
        for _ in range(2):  # alternated: the machine's drift hits both
            for name, daemon in (("local", local), ("postgresql", shared)):
                moves = _moves(daemon, sessions[name], 100)
                before = _cpu(daemon, cluster)
                runs[name]["64"].append(run_load(daemon.port, moves, total, 64))
                for part, used in _cpu(daemon, cluster).items():
                    spent = (used - before[part]) / total * 1e6 / 2  # two runs each
                    cpu[name][part] = round(cpu[name].get(part, 0.0) + spent, 1)
                runs[name]["1"].append(run_load(daemon.port, moves, total // 4, 1))
        result: dict[str, Any] = {
            "commands_per_run": total,
            "cpu_us_per_command_64_in_flight": cpu,
        }
        for in_flight in ("64", "1"):
            rate = {name: statistics.median(r["per_second"] for r in runs[name][in_flight])
                    for name in runs}  # fmt: skip
            p50 = {name: statistics.median(r["p50_ms"] for r in runs[name][in_flight])
                   for name in runs}  # fmt: skip
            result[f"in_flight_{in_flight}"] = {
                "local_per_second": rate["local"],
                "postgresql_per_second": rate["postgresql"],
                "postgresql_over_local": ratio(rate["postgresql"], rate["local"]),
                "local_p50_ms": p50["local"],
                "postgresql_p50_ms": p50["postgresql"],
                "runs": runs["local"][in_flight] + runs["postgresql"][in_flight],
            }
        result["sizing"] = _sizing(cluster, shared, sessions["postgresql"])
        result["target_met"] = (
            result["in_flight_64"]["postgresql_over_local"]
            >= TARGETS["postgresql_over_local_pipelined_min"]
        )
        return result
    finally:
        local.stop()
        shared.stop()
        blender.stop()


def _cpu(daemon: Daemon, cluster: Cluster) -> dict[str, float]:
    """CPU seconds so far of the daemon, and of every PostgreSQL server process."""
    server = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] == "postgres" and process.info["cpu_times"] is not None:
            server += process.info["cpu_times"].user + process.info["cpu_times"].system
    return {"daemon": cpu_seconds(daemon.process.pid), "postgresql": server}


def _command_count(daemon: Daemon, session_id: str) -> int:
    listed = daemon.call("session.list", {"status": "open"})["sessions"]
    return int(next(s for s in listed if s["session_id"] == session_id)["command_count"])


def _sizing(cluster: Cluster, daemon: Daemon, session_id: str) -> dict[str, Any]:
    """Rows and bytes per command in the database, and the local journal's bytes."""
    commands = _command_count(daemon, session_id)
    journal = daemon.data_dir / "sessions" / f"{session_id}.journal"
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        rows, line_bytes = conn.execute(
            "SELECT count(*), sum(pg_column_size(line)) FROM journal WHERE session_id = %s",
            (session_id,),
        ).fetchone() or (0, 0)
        table = conn.execute("SELECT pg_total_relation_size('journal')").fetchone()
        all_rows = conn.execute("SELECT count(*) FROM journal").fetchone()
    assert table is not None and all_rows is not None
    return {
        "commands": commands,
        "journal_rows_per_command": round(rows / commands, 2),
        "jsonb_bytes_per_command": round(int(line_bytes) / commands, 1),
        "journal_table_bytes_per_command_with_index": round(
            table[0] * rows / max(all_rows[0], 1) / commands, 1
        ),
        "local_journal_bytes_per_command": round(journal.stat().st_size / commands, 1),
    }


def _adopt(counts: dict[str, Any], workdir: Path, cluster: Cluster) -> dict[str, Any]:
    blender_a, blender_b = Headless(workdir, "adopt-a"), Headless(workdir, "adopt-b")
    extra = ("--store", cluster.url, "--store-lease", str(LEASE_S))
    a = Daemon(workdir / "adopt-a-data", blender_a.port, blender_a.env, extra=extra)
    b = Daemon(workdir / "adopt-b-data", blender_b.port, blender_b.env, extra=extra)
    objects = counts["fleet_objects"]
    try:
        session_id = a.call("session.open", {"name": "adopted"})["session_id"]
        _fill(a, session_id, objects)
        a.call("session.checkpoint", {"session_id": session_id})
        run_load(a.port, _moves(a, session_id, objects), counts["fleet_after"], 64)
        commands = _command_count(a, session_id)
        a.process.send_signal(signal.SIGKILL)
        a.process.wait()
        killed_at = time.perf_counter()
        while True:  # refused (conflict) until A's lease has expired
            began = time.perf_counter()
            try:
                adopted = b.call("session.adopt", {"session_id": session_id})
                break
            except RuntimeError as error:
                if "held by the daemon" not in str(error):
                    raise
                if began - killed_at > 10 * LEASE_S:
                    raise
                time.sleep(0.05)  # polling the lease's expiry, not timing anything
        wall = time.perf_counter() - began
        assert adopted["resumed"] and adopted["commands"] == commands, adopted
        scene = b.call("session.state", {"session_id": session_id})["scene"]["objects"]
        assert len(scene) == objects
        return {
            "objects": objects,
            "commands": commands,
            "replayed_after_checkpoint": counts["fleet_after"],
            "adopt_s": round(wall, 3),
            "adopt_daemon_ms": adopted["duration_ms"],
            "lease_s": LEASE_S,
            "killed_to_adopted_s": round(time.perf_counter() - killed_at, 3),
        }
    finally:
        b.stop()
        if a.process.poll() is None:
            a.stop()
        blender_a.stop()
        blender_b.stop()


def _many_open(counts: dict[str, Any], workdir: Path, cluster: Cluster) -> dict[str, Any]:
    blender = Headless(workdir, "many")
    opens = counts["fleet_opens"]
    result: dict[str, Any] = {"sessions": opens, "lease_s": LEASE_S}
    try:
        for name, extra in (
            ("local", ()),
            ("postgresql", ("--store", cluster.url, "--store-lease", str(LEASE_S))),
        ):
            daemon = Daemon(workdir / f"many-{name}", blender.port, blender.env, extra=extra)
            try:
                began = time.perf_counter()
                for n in range(opens):
                    daemon.call("session.open", {"name": f"{name} {n}"})
                result[f"{name}_open_s"] = round(time.perf_counter() - began, 2)
                if name == "postgresql":
                    before, at = cpu_seconds(daemon.process.pid), time.perf_counter()
                    time.sleep(5 * LEASE_S)  # measuring idle CPU over a fixed span
                    spent = cpu_seconds(daemon.process.pid) - before
                    result["postgresql_idle_cpu_percent"] = round(
                        100 * spent / (time.perf_counter() - at), 1
                    )
            finally:
                daemon.stop()
        return result
    finally:
        blender.stop()
