"""Benchmarks against real Blenders; prints one JSON document.

    ./scripts/bench            # full run (about 5 minutes here)
    ./scripts/bench --smoke    # tiny counts, so CI keeps this code from rotting

Every comparison is measured in the same run. Cases (numbers as in issue 6):
1. roundtrip: a trivial command (get_scene_info, empty scene), headless Blender,
   1 / 8 / 64 in flight: directly to the addon, through the daemon (logs at warning
   and at the default info level), and through two bare relays that only copy bytes
   (trio streams, a selectors loop): the floor any daemon on that event loop pays.
2. gui: Debian's GUI Blender under xvfb (timer path): a blender-mcp-style server (one
   command per one-shot timer, one request at a time per connection) against this
   addon's drained queue, in the same Blender.
3. scene: 1,000 cubes through bpy.ops vs the data API; transform 1,000 (in a scene
   of 1,000 and of 10,000); get_state of 1,000 and 10,000 objects (time and bytes).
4. heartbeat_busy: pong latency while the main thread is busy for 10 s, and the link
   status the daemon reports meanwhile.
5. persistence: journal append cost, throughput with and without fsync, close time and
   record size for 1k / 10k / 100k recorded commands, restore time per path for
   10 / 1,000 / 10,000 objects.
6. memory: daemon RSS after 10k / 100k / 1M commands across 100 sessions.
7. scale (bench/scale.py): sessions, history, blenders, clients: one case per axis
   of issue 13; batch: 1,000 creates through `session.batch` against the same straight
   to the addon.
8. time travel (bench/timetravel.py): rewind, checkpoint_cost, diff_and_close.
9. proxy (bench/proxy.py): a blender-mcp-style client to a GUI Blender, straight to
   the addon and through the daemon's recording proxy.
10. web (bench/web.py): the web timeline in chromium: the gallery of 1,000 sessions, a
   100,000-step session's page, and command throughput with a page watching.

11. fleet (bench/fleet.py): the PostgreSQL store: pipelined throughput against the
   local store, rows and bytes per command, adopting a 1,000-object session.

`summary` at the end puts the figures the targets name side by side.

Long (about 650 lines) because it is the one entry point of every case that has no
module of its own (round trips, GUI, scene, heartbeat, persistence, memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import fleet, proxy, scale, timetravel, web  # noqa: E402
from bench.common import (  # noqa: E402
    TRIVIAL,
    Daemon,
    Headless,
    LineClient,
    blender_version,
    cpu_seconds,
    line,
    percentiles_ms,
    ratio,
    run_clients,
    run_load,
    start_relay,
)
from daemon.store.files import JournalFile  # noqa: E402
from daemon.store.records import JournalDone, JournalStart, encode_journal_line  # noqa: E402
from tests import blender_procs  # noqa: E402

# fmt: off
FULL = {
    "one": 3000, "pipelined": 20000, "objects": 1000, "big_scene": 10000, "gui": 500,
    "busy_s": 10.0, "records": [1000, 10000, 100000], "restore": [10, 1000, 10000],
    "memory": [10000, 100000, 1000000], "memory_sessions": 100,
}
SMOKE = {
    "one": 50, "pipelined": 200, "objects": 20, "big_scene": 50, "gui": 20,
    "busy_s": 1.0, "records": [100, 300], "restore": [10, 50],
    "memory": [100, 300], "memory_sessions": 5,
}
# fmt: on
FULL |= scale.FULL | timetravel.FULL | proxy.FULL | web.FULL | fleet.FULL
SMOKE |= scale.SMOKE | timetravel.SMOKE | proxy.SMOKE | web.SMOKE | fleet.SMOKE
TARGETS = {
    "one_at_a_time_time_ratio_max": 1.5,
    "pipelined_time_ratio_max": 1.25,
    "pipelined_per_second_min": 20000,
    "gui_64_in_flight_over_baseline_min": 50,
    "busy_pong_p99_ms_max": 5.0,
    "restore_1000_objects_s_max": 0.5,
    **scale.TARGETS,
    **timetravel.TARGETS,
    **proxy.TARGETS,
}


# --- 1. round trips ------------------------------------------------------------------


def bench_roundtrip(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    blender = Headless(workdir, "rt")
    daemon = Daemon(workdir / "rt-data", blender.port, blender.env)
    chatty = Daemon(workdir / "rt-data-info", blender.port, blender.env, log_level="info")
    relays = {kind: start_relay(kind, blender.port) for kind in ("trio", "selectors")}
    through_baseline = None
    baseline = None
    if counts.get("baseline_source"):
        baseline = Daemon(
            workdir / "rt-data-baseline",
            blender.port,
            blender.env,
            source=counts["baseline_source"],
        )
    try:
        if baseline is not None:
            opened = baseline.call("session.open", {"name": "bench"})["session_id"]
            through_baseline = baseline.command_line(opened, TRIVIAL["type"])
        direct = line({"id": 1, **TRIVIAL})
        session = daemon.call("session.open", {"name": "bench"})["session_id"]
        through = daemon.command_line(session, TRIVIAL["type"])
        chatty_session = chatty.call("session.open", {"name": "bench"})["session_id"]
        through_chatty = chatty.command_line(chatty_session, TRIVIAL["type"])
        results: dict[str, Any] = {"blender": blender_version(blender.port)}
        for in_flight in (1, 8, 64):
            total = counts["one"] if in_flight == 1 else counts["pipelined"]
            run_load(blender.port, direct, min(total, 300), in_flight)  # warm up
            run_load(daemon.port, through, min(total, 300), in_flight)
            entry: dict[str, Any] = {"direct": run_load(blender.port, direct, total, in_flight)}
            cpu_before = cpu_seconds(daemon.process.pid)
            entry["daemon"] = run_load(daemon.port, through, total, in_flight)
            entry["daemon"]["daemon_cpu_us_per_request"] = round(
                (cpu_seconds(daemon.process.pid) - cpu_before) / total * 1e6, 1
            )
            entry["daemon_info_logs"] = run_load(chatty.port, through_chatty, total, in_flight)
            for kind, (_, port) in relays.items():
                entry[f"relay_{kind}"] = run_load(port, direct, total, in_flight)
            compared = ["daemon", "daemon_info_logs", "relay_trio", "relay_selectors"]
            if baseline is not None and through_baseline is not None:
                run_load(baseline.port, through_baseline, min(total, 300), in_flight)
                cpu_before = cpu_seconds(baseline.process.pid)
                entry["daemon_baseline"] = run_load(
                    baseline.port, through_baseline, total, in_flight
                )
                entry["daemon_baseline"]["daemon_cpu_us_per_request"] = round(
                    (cpu_seconds(baseline.process.pid) - cpu_before) / total * 1e6, 1
                )
                entry["daemon_baseline"]["ref"] = counts["baseline_ref"]
                compared.append("daemon_baseline")
            rate = entry["direct"]["per_second"]
            entry["time_ratio_over_direct"] = {
                name: ratio(rate, entry[name]["per_second"]) for name in compared
            }
            results[f"in_flight_{in_flight}"] = entry
        daemon.call("session.close", {"session_id": session})
        one, piped = results["in_flight_1"], results["in_flight_64"]
        results["targets"] = {
            "one_at_a_time_time_ratio": one["time_ratio_over_direct"]["daemon"],
            "one_at_a_time_met": one["time_ratio_over_direct"]["daemon"]
            <= TARGETS["one_at_a_time_time_ratio_max"],
            "pipelined_time_ratio": piped["time_ratio_over_direct"]["daemon"],
            "pipelined_ratio_met": piped["time_ratio_over_direct"]["daemon"]
            <= TARGETS["pipelined_time_ratio_max"],
            "pipelined_per_second": piped["daemon"]["per_second"],
            "pipelined_rate_met": piped["daemon"]["per_second"]
            >= TARGETS["pipelined_per_second_min"],
        }
        return results
    finally:
        for process, _ in relays.values():
            process.kill()
            process.wait()
        chatty.stop()
        daemon.stop()
        if baseline is not None:
            baseline.stop()
        blender.stop()


# --- 2. GUI: one-shot timers vs the drained queue ------------------------------------


def bench_gui(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    if not blender_procs.have_gui_blender():
        return {"skipped": "Debian's blender and xvfb-run are not installed"}
    env = blender_procs.blender_env(workdir / "gui-home")
    baseline_script = str(ROOT / "bench" / "one_shot_timer_server.py")
    blender = blender_procs.start(
        blender_procs.gui_command(extra=["--python", baseline_script]), env
    )
    try:
        marker = next(row for row in blender.output if row.startswith("ONE_SHOT_TIMER_SERVER "))
        baseline_port = int(marker.split()[1])
        request = line({"id": 1, **TRIVIAL})
        run_load(blender.port, request, 50, 1)  # warm up: the window is drawing at start
        run_load(baseline_port, request, 50, 1)
        n = counts["gui"]
        baseline = {
            "one_at_a_time": run_load(baseline_port, request, n, 1),
            "four_clients": run_clients(baseline_port, request, n, 4),
        }
        addon = {
            "one_at_a_time": run_load(blender.port, request, n, 1),
            "four_clients": run_clients(blender.port, request, n, 4),
            "in_flight_64": run_load(blender.port, request, n * 8, 64),
        }
        base_rate = baseline["one_at_a_time"]["per_second"]
        over = {
            "one_at_a_time": ratio(addon["one_at_a_time"]["per_second"], base_rate),
            "four_clients": ratio(
                addon["four_clients"]["per_second"], baseline["four_clients"]["per_second"]
            ),
            "in_flight_64_over_baseline_one_connection": ratio(
                addon["in_flight_64"]["per_second"], base_rate
            ),
        }
        return {
            "blender": blender_version(blender.port),
            "baseline_one_shot_timers": baseline,
            "addon_drained_queue": addon,
            "addon_over_baseline_rate": over,
            "targets": {
                "one_at_a_time_no_slower": over["one_at_a_time"] >= 0.95,
                "in_flight_64_met": over["in_flight_64_over_baseline_one_connection"]
                >= TARGETS["gui_64_in_flight_over_baseline_min"],
            },
        }
    finally:
        blender.stop()


# --- 3. scene work -------------------------------------------------------------------


def bench_scene(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    blender = Headless(workdir, "scene", "--allow-execute-code")
    client = LineClient(blender.port)
    try:
        count = counts["objects"]
        code = (
            "import bpy, time\nstarted = time.perf_counter()\n"
            f"for i in range({count}):\n    bpy.ops.mesh.primitive_cube_add(location=(i, 0, 0))\n"
            "print(time.perf_counter() - started)"
        )
        ops_s = float(
            client.call({"id": 1, "type": "execute_code", "params": {"code": code}})["result"][
                "result"
            ]
        )
        client.call({"id": 2, "type": "execute_code", "params": {"code": _CLEAR_SCENE}})
        create_s = _pipelined(
            client,
            [
                {
                    "type": "create_object",
                    "params": {"kind": "cube", "name": f"D{i}", "location": [i, 1, 0]},
                }
                for i in range(count)
            ],
        )
        transform_s = _pipelined(
            client,
            [
                {
                    "type": "transform_object",
                    "params": {"name": f"D{i}", "location": [i, 2, 0], "rotation": [0, 0, 1]},
                }
                for i in range(count)
            ],
        )
        state_small = _get_state(client)
        big = counts["big_scene"]
        _pipelined(
            client,
            [
                {"type": "create_object", "params": {"kind": "cube", "name": f"E{i}"}}
                for i in range(big - count)
            ],
        )
        state_big = _get_state(client)
        transform_big_s = _pipelined(
            client,
            [
                {  # the newest objects: a name lookup that scans finds them last
                    "type": "transform_object",
                    "params": {"name": f"E{i}", "location": [i, 3, 0]},
                }
                for i in range(max(0, big - 2 * count), big - count)
            ],
        )
        return {
            "create": {
                "objects": count,
                "bpy_ops_seconds": round(ops_s, 3),
                "data_api_seconds_end_to_end": round(create_s, 3),
                "ops_over_data_api": ratio(ops_s, create_s),
            },
            "transform": {"objects": count, "seconds": round(transform_s, 3)},
            f"transform_{count}_in_a_scene_of_{big}": {"seconds": round(transform_big_s, 3)},
            f"get_state_{count}": state_small,
            f"get_state_{big}": state_big,
        }
    finally:
        client.close()
        blender.stop()


_CLEAR_SCENE = (
    "import bpy\nbpy.data.batch_remove(list(bpy.data.objects))\n"
    "bpy.data.batch_remove([m for m in bpy.data.meshes if not m.users])"
)


def _pipelined(client: LineClient, requests: list[dict[str, Any]]) -> float:
    """Send every request at once, read every answer; seconds end to end."""
    payload = b"".join(line({"id": i, **request}) for i, request in enumerate(requests))
    began = time.perf_counter()
    client.sock.sendall(payload)
    for _ in requests:
        reply = json.loads(client.reader.readline())
        if reply.get("status") != "success":
            raise RuntimeError(f"request failed: {reply}")
    return time.perf_counter() - began


def _get_state(client: LineClient) -> dict[str, Any]:
    began = time.perf_counter()
    client.sock.sendall(line({"id": "s", "type": "get_state"}))
    raw = client.reader.readline()
    seconds = time.perf_counter() - began
    state = json.loads(raw)["result"]
    return {"objects": len(state["objects"]), "seconds": round(seconds, 4), "bytes": len(raw)}


# --- 4. heartbeat while the main thread is busy --------------------------------------


def bench_heartbeat_busy(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    blender = Headless(workdir, "busy", "--allow-execute-code")
    daemon = Daemon(workdir / "busy-data", blender.port, blender.env)
    busy_s = counts["busy_s"]
    try:
        pinger = LineClient(blender.port)
        worker = LineClient(blender.port)
        statuses: list[str] = []
        latencies: list[float] = []
        busy_pongs = 0
        done = threading.Event()

        def keep_busy() -> None:
            code = f"import time\ntime.sleep({busy_s})"
            worker.call({"id": "busy", "type": "execute_code", "params": {"code": code}})
            done.set()

        thread = threading.Thread(target=keep_busy)
        thread.start()
        next_status = time.monotonic()
        while not done.is_set():
            began = time.perf_counter()
            pong = pinger.call({"id": "p", "type": "ping"})
            latencies.append(time.perf_counter() - began)
            busy_pongs += bool(pong["result"]["main_thread"]["busy"])
            if time.monotonic() >= next_status:
                statuses.append(daemon.call("status")["blender"]["status"])
                next_status += 0.1
            time.sleep(0.01)  # a ping every ~10 ms, as a load pattern, not a wait
        thread.join()
        pinger.close()
        worker.close()
        figures = percentiles_ms(latencies)
        return {
            "busy_seconds": busy_s,
            "pings": len(latencies),
            "pongs_saying_busy": busy_pongs,
            "pong_latency": figures,
            "daemon_link_statuses_seen": sorted(set(statuses)),
            "targets": {
                "p99_met": figures["p99_ms"] < TARGETS["busy_pong_p99_ms_max"],
                "no_false_dead": "disconnected" not in statuses,
            },
        }
    finally:
        daemon.stop()
        blender.stop()


# --- 5. persistence ------------------------------------------------------------------


def bench_journal_append(workdir: Path, lines: int = 20000) -> dict[str, Any]:
    """One command's two journal lines (start, done), appended the way the daemon does."""
    start = encode_journal_line(
        JournalStart(
            seq=1, type="get_scene_info", params=_raw(b"{}"), started_at=time.time(), client_id=None
        )
    )
    done = encode_journal_line(
        JournalDone(seq=1, status="success", duration_ms=0.2, result=_raw(_SCENE_RESULT))
    )
    journal = JournalFile(workdir / "append-bench.jsonl")
    began = time.perf_counter()
    for _ in range(lines):
        journal.append(start)
        journal.append(done)
    seconds = time.perf_counter() - began
    journal.close()
    return {
        "commands": lines,
        "us_per_command": round(seconds / lines * 1e6, 2),
        "bytes_per_command": len(start) + len(done),
    }


_SCENE_RESULT = json.dumps(
    {"name": "Scene", "object_count": 0, "objects": [], "materials_count": 0}
).encode()


def _raw(data: bytes) -> msgspec.Raw:
    return msgspec.Raw(data)


def bench_persistence(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    blender = Headless(workdir, "persist")
    daemon = Daemon(workdir / "persist-data", blender.port, blender.env)
    fsync = Daemon(workdir / "persist-fsync", blender.port, blender.env, extra=("--journal-fsync",))
    unjournaled = Daemon(
        workdir / "persist-nojournal",
        blender.port,
        blender.env,
        module="bench.daemon_without_journal",
    )
    try:
        results: dict[str, Any] = {"journal_append": bench_journal_append(workdir)}
        throughput: dict[str, Any] = {}
        for name, target in (
            ("journal_no_fsync", daemon),
            ("journal_fsync", fsync),
            ("journal_writes_discarded", unjournaled),
        ):
            session = target.call("session.open")["session_id"]
            request = target.command_line(session, TRIVIAL["type"])
            run_load(target.port, request, 300, 64)  # warm up
            throughput[name] = run_load(target.port, request, counts["pipelined"], 64)
            if target is not unjournaled:  # its close would find an empty journal
                target.call("session.close", {"session_id": session})
        direct = run_load(blender.port, line({"id": 1, **TRIVIAL}), counts["pipelined"], 64)
        throughput["direct_no_daemon"] = direct
        share = results["journal_append"]["us_per_command"] / (
            1e6 / throughput["journal_no_fsync"]["per_second"]
        )
        throughput["journal_append_share_of_time_per_command"] = round(share, 3)
        throughput["with_over_without_journal_time"] = ratio(
            throughput["journal_writes_discarded"]["per_second"],
            throughput["journal_no_fsync"]["per_second"],
        )
        results["throughput_64_in_flight"] = throughput
        records: dict[str, Any] = {}
        for size in counts["records"]:
            session = daemon.call("session.open")["session_id"]
            run_load(daemon.port, daemon.command_line(session, TRIVIAL["type"]), size, 64)
            began = time.perf_counter()
            closed = daemon.call("session.close", {"session_id": session})
            records[str(size)] = {
                "close_s": round(time.perf_counter() - began, 3),
                "record_bytes": Path(closed["path"]).stat().st_size,
            }
        results["close_by_recorded_commands"] = records
    finally:
        unjournaled.stop()
        fsync.stop()
        daemon.stop()
        blender.stop()
    results["restore_by_objects"] = bench_restore(counts["restore"], workdir)
    results["targets"] = {
        "restore_1000_met": {
            path: seconds < TARGETS["restore_1000_objects_s_max"]
            for path, seconds in results["restore_by_objects"]
            .get("1000", {})
            .get("restore_s", {})
            .items()
        }
    }
    return results


def bench_restore(sizes: list[int], workdir: Path) -> dict[str, Any]:
    """Close and restore times (each restore path) for sessions of N objects."""
    blender = Headless(workdir, "life")
    daemon = Daemon(workdir / "life-data", blender.port, blender.env)
    results: dict[str, Any] = {}
    try:
        for size in sizes:
            session = daemon.call("session.open")["session_id"]
            create = daemon.command_line(
                session, "create_object", {"kind": "cube", "location": [1, 2, 3]}
            )
            began = time.perf_counter()
            run_load(daemon.port, create, size, 64)
            created_s = time.perf_counter() - began
            began = time.perf_counter()
            closed = daemon.call("session.close", {"session_id": session})
            close_s = time.perf_counter() - began
            # The thumbnail is rendered after close answers; Blender does it before the
            # next request, so each timing below waits for it first.
            began = time.perf_counter()
            daemon.call("session.thumbnail", {"session_id": session})
            thumbnail_s = time.perf_counter() - began
            entry: dict[str, Any] = {
                "create_through_daemon_s": round(created_s, 3),
                "close_s": round(close_s, 3),
                "thumbnail_after_close_s": round(thumbnail_s, 3),
                "record_bytes": Path(closed["path"]).stat().st_size,
                "blend_bytes": (daemon.data_dir / "sessions" / f"{session}.blend").stat().st_size,
                "restore_s": {},
            }
            for path in ("blend", "state", "replay"):
                began = time.perf_counter()
                restored = daemon.call("session.restore", {"session_id": session, "path": path})
                entry["restore_s"][path] = round(time.perf_counter() - began, 3)
                daemon.call("session.close", {"session_id": restored["session_id"]})
                daemon.call("session.thumbnail", {"session_id": restored["session_id"]})
            results[str(size)] = entry
        return results
    finally:
        daemon.stop()
        blender.stop()


# --- 6. memory -----------------------------------------------------------------------


def bench_memory(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    blender = Headless(workdir, "memory")
    daemon = Daemon(workdir / "memory-data", blender.port, blender.env)
    try:
        sessions = [
            daemon.call("session.open")["session_id"] for _ in range(counts["memory_sessions"])
        ]
        requests = [daemon.command_line(session, TRIVIAL["type"]) for session in sessions]
        rss = {"0": daemon.rss_mb()}
        done = 0
        began = time.perf_counter()
        for checkpoint in counts["memory"]:
            run_load(daemon.port, requests, checkpoint - done, 64)
            done = checkpoint
            rss[str(checkpoint)] = daemon.rss_mb()
        seconds = time.perf_counter() - began
        first, last = rss[str(counts["memory"][0])], rss[str(counts["memory"][-1])]
        return {
            "sessions": len(sessions),
            "commands": done,
            "seconds": round(seconds, 1),
            "rss_mb_after_commands": rss,
            "growth_mb_first_to_last_checkpoint": round(last - first, 1),
        }
    finally:
        daemon.stop()
        blender.stop()


# --- main ----------------------------------------------------------------------------

CASES = {
    "roundtrip": bench_roundtrip,
    "gui": bench_gui,
    "scene": bench_scene,
    "heartbeat_busy": bench_heartbeat_busy,
    "persistence": bench_persistence,
    "memory": bench_memory,
    "sessions": scale.bench_sessions,
    "history": scale.bench_history,
    "blenders": scale.bench_blenders,
    "clients": scale.bench_clients,
    "batch": scale.bench_batch,
    "rewind": timetravel.bench_rewind,
    "checkpoint_cost": timetravel.bench_checkpoint_cost,
    "diff_and_close": timetravel.bench_diff_and_close,
    "proxy": proxy.bench_proxy,
    "web": web.bench_web,
    "fleet": fleet.bench_fleet,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, for CI")
    parser.add_argument(
        "--only", action="append", choices=sorted(CASES), help="run only this case (repeatable)"
    )
    parser.add_argument(
        "--baseline-ref",
        metavar="GIT_REF",
        help="also time the daemon of this commit in the roundtrip case (before/after)",
    )
    args = parser.parse_args()
    counts: dict[str, Any] = dict(SMOKE if args.smoke else FULL)
    chosen = args.only or list(CASES)
    with tempfile.TemporaryDirectory(prefix="bss-bench-") as tmp:
        workdir = Path(tmp)
        if args.baseline_ref:
            counts["baseline_ref"] = args.baseline_ref
            counts["baseline_source"] = _checkout(args.baseline_ref, workdir / "baseline-src")
        report: dict[str, Any] = {
            "environment": {
                "python": platform.python_version(),
                "bpy": _bpy_version(),
                "gui_blender": shutil.which("blender"),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "smoke": args.smoke,
            },
            "targets": TARGETS,
        }
        for name in chosen:
            began = time.perf_counter()
            report[name] = CASES[name](counts, workdir)
            report[name]["case_seconds"] = round(time.perf_counter() - began, 1)
            print(f"bench: {name} done in {report[name]['case_seconds']} s", file=sys.stderr)
        report["summary"] = scale.summary(report) | timetravel.summary(report)
    print(json.dumps(report, indent=2))
    return 0


def _checkout(ref: str, into: Path) -> Path:
    """The daemon's sources at `ref`, unpacked from git (no worktree left behind)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "daemon"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _bpy_version() -> str:
    try:
        from importlib.metadata import version

        return version("bpy")
    except Exception:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
