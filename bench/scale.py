"""Scale on one machine (issue 13): one case per axis, each compared inside one run.

- sessions: 100 / 1,000 / 10,000 closed sessions in the data dir: start-up to a
  control port that answers, the first `list` page, a name lookup, `stats`, on a
  first start (the index built) and a second (the index read);
- history: one session of 10k / 100k / 1M commands: a page of `show` and of the
  timeline at random steps, daemon RSS growth, and the heartbeat's round trip and
  another client's command latency while two readers stream the whole history; and
  a replay restore, pipelined;
- blenders: 1 / 2 / 4 headless Blenders behind one daemon, one pipelined client each:
  the aggregate against the same Blenders answered directly, and against one daemon
  per Blender (the other way to use more than one core);
- clients: 1 / 10 / 100 clients on one session, one request at a time.

Records are written straight into the data dir (the store's own writer), so the
axes measure reading them, not recording them (recording is the roundtrip case's).

Long (about 460 lines) because each axis of issue 13 is one case with its setup here.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from bench.common import (
    TRIVIAL,
    Daemon,
    LineClient,
    percentiles_ms,
    ratio,
    run_clients,
    run_load,
)
from tests import blender_procs
from tests.records import session_id_for, write_closed

# fmt: off
FULL = {
    "sessions": [100, 1000, 10000], "history": [10_000, 100_000, 1_000_000],
    "replay": 100_000, "blenders": [1, 2, 4], "blender_requests": 20000,
    "clients": [1, 10, 100], "client_requests": 4000, "lookups": 30, "busy_commands": 8000,
    "batch_commands": 1000,
}
SMOKE = {
    "sessions": [20, 60], "history": [500, 2000], "replay": 200, "blenders": [1, 2],
    "blender_requests": 400, "clients": [1, 4], "client_requests": 80, "lookups": 5,
    "busy_commands": 100, "batch_commands": 50,
}
# fmt: on
TARGETS = {
    "sessions_10000_list_ms_max": 50,
    "sessions_10000_name_lookup_ms_max": 50,
    "sessions_10000_port_ready_s_max": 1.0,
    "history_1m_page_ms_max": 50,
    "history_1m_rss_growth_mb_max": 100,
    "history_pong_p99_ms_max_with_two_readers": 5.0,
    "replay_100k_s_max": 10.0,
    "two_blenders_over_one_min": 1.5,
}


class _Headless:
    def __init__(self, workdir: Path, name: str) -> None:
        self.env = blender_procs.blender_env(workdir / f"{name}-home")
        self.blender = blender_procs.start(
            blender_procs.headless_command("--factory-scene"), self.env
        )
        self.port = self.blender.port

    def stop(self) -> None:
        self.blender.stop()


def _timed(call: Any, times: int) -> dict[str, float]:
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return percentiles_ms(samples)


def _start(data_dir: Path, port: int, env: dict[str, str], *extra: str) -> tuple[Daemon, float]:
    began = time.perf_counter()
    daemon = Daemon(data_dir, port, env, extra=extra)  # returns once the port answers
    return daemon, round(time.perf_counter() - began, 3)


# --- sessions -----------------------------------------------------------------------------


def bench_sessions(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    blender = _Headless(workdir, "sessions")
    report: dict[str, Any] = {}
    try:
        for total in counts["sessions"]:
            data_dir = workdir / f"sessions-{total}"
            sessions_dir = data_dir / "sessions"
            sessions_dir.mkdir(parents=True)
            data_dir.chmod(0o700)
            began = time.perf_counter()
            now = time.time() - total
            for n in range(total):
                write_closed(sessions_dir, session_id_for(n), f"bench-{n}", 5, now + n)
            written_s = time.perf_counter() - began
            row: dict[str, Any] = {"records_written_s": round(written_s, 1)}
            for start in ("first_start", "second_start"):
                daemon, ready_s = _start(data_dir, blender.port, blender.env)
                try:
                    began = time.perf_counter()
                    first = daemon.call("session.list", {"limit": 50})
                    index_ready_s = time.perf_counter() - began
                    assert len(first["sessions"]) == min(50, total), first
                    lookups = counts["lookups"]
                    row[start] = {
                        "port_ready_s": ready_s,
                        "first_list_after_start_s": round(index_ready_s, 3),
                        "list_first_page": _timed(
                            lambda d=daemon: d.call("session.list", {"limit": 50}), lookups
                        ),
                        "name_lookup": _timed(
                            lambda d=daemon, t=total: d.call(
                                "session.show",
                                {"session_id": f"bench-{random.randrange(t)}", "limit": 1},
                            ),
                            lookups,
                        ),
                        "stats": _timed(lambda d=daemon: d.call("session.stats"), 3),
                    }
                finally:
                    daemon.stop()
            report[str(total)] = row
    finally:
        blender.stop()
    return report


# --- history ------------------------------------------------------------------------------


def bench_history(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    blender = _Headless(workdir, "history")
    report: dict[str, Any] = {}
    try:
        for commands in counts["history"]:
            data_dir = workdir / f"history-{commands}"
            (data_dir / "sessions").mkdir(parents=True)
            data_dir.chmod(0o700)
            session_id = session_id_for(commands)
            began = time.perf_counter()
            size = write_closed(data_dir / "sessions", session_id, "big", commands, time.time())
            written_s = time.perf_counter() - began
            daemon, ready_s = _start(
                data_dir, blender.port, blender.env, "--heartbeat-interval", "0.005"
            )
            try:
                report[str(commands)] = _history_case(
                    daemon, session_id, commands, counts["lookups"], counts["busy_commands"]
                ) | {
                    "record_mb": round(size / 2**20, 1),
                    "record_written_s": round(written_s, 1),
                    "port_ready_s": ready_s,
                }
            finally:
                daemon.stop()
        report["replay_restore"] = _replay(counts, workdir, blender)
    finally:
        blender.stop()
    return report


def _history_case(
    daemon: Daemon, session_id: str, commands: int, lookups: int, counts_busy: int
) -> dict[str, Any]:
    rss_before = daemon.rss_mb()
    page = _timed(
        lambda: daemon.call(
            "session.show",
            {"session_id": session_id, "after_seq": random.randrange(commands), "limit": 1000},
        ),
        lookups,
    )
    timeline = _timed(
        lambda: daemon.call(
            "session.timeline",
            {"session_id": session_id, "after_seq": random.randrange(commands), "limit": 200},
        ),
        lookups,
    )
    opened = daemon.call("session.open", {"name": f"beside-{commands}"})["session_id"]
    request = daemon.command_line(opened, "get_scene_info")
    idle = run_load(daemon.port, request, 300, 1)
    pongs_idle = daemon.call("status")["blender"]["pong_ms"]
    # The readers are processes of their own: in this one they would hold the bench's
    # GIL while they decode pages, and the other client's figures would be theirs.
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    read_pages = context.Value("i", 0)
    readers = [
        context.Process(
            target=_read_history, args=(daemon.port, daemon.token, session_id, stop, read_pages)
        )
        for _ in range(2)
    ]
    for process in readers:
        process.start()
    try:
        while read_pages.value < 2:  # both are reading (bounded by the readers' own pace)
            run_load(daemon.port, request, 1, 1)
        # Long enough that the heartbeat's last 512 round trips (5 ms apart) all fall
        # while the readers read.
        busy = run_load(daemon.port, request, counts_busy, 1)
        pongs_busy = daemon.call("status")["blender"]["pong_ms"]
        rss_during = daemon.rss_mb()
    finally:
        stop.set()
        for process in readers:
            process.join(60)
    daemon.call("session.close", {"session_id": opened})
    return {
        "show_page_1000": page,
        "timeline_page_200": timeline,
        "rss_mb_before": rss_before,
        "rss_growth_mb_with_two_readers": round(rss_during - rss_before, 1),
        "pages_read_by_two_readers": read_pages.value,
        "pong_ms_idle": pongs_idle,
        "pong_ms_two_readers": pongs_busy,
        "other_client_command_idle": idle,
        "other_client_command_two_readers": busy,
        "other_client_p50_ratio": ratio(busy["p50_ms"], idle["p50_ms"]),
    }


def _read_history(port: int, token: str, session_id: str, stop: Any, pages: Any) -> None:
    """A reader of a whole history, page after page, round and round, until `stop`."""
    client = LineClient(port)
    decoder = msgspec.json.Decoder()
    after = 0
    try:
        while not stop.is_set():
            request = {
                "token": token,
                "id": 1,
                "op": "session.show",
                "params": {"session_id": session_id, "after_seq": after, "limit": 2000},
            }
            client.sock.sendall(msgspec.json.encode(request) + b"\n")
            reply = decoder.decode(client.reader.readline())
            with pages.get_lock():
                pages.value += 1
            after = reply["result"]["page"]["next_after_seq"] or 0
    finally:
        client.close()


def _replay(counts: dict[str, Any], workdir: Path, blender: _Headless) -> dict[str, Any]:
    """A replay restore of a session of transform commands (a cube made first)."""
    commands = counts["replay"]
    data_dir = workdir / "replay"
    (data_dir / "sessions").mkdir(parents=True)
    data_dir.chmod(0o700)
    daemon = Daemon(data_dir, blender.port, blender.env)
    try:
        source = daemon.call("session.open", {"name": "replay-source"})["session_id"]
        create = daemon.command_line(source, "create_object", {"kind": "cube", "name": "Cube"})
        run_load(daemon.port, create, 1, 1)
        moves = [
            daemon.command_line(
                source, "transform_object", {"name": "Cube", "location": [n % 100, 0, 0]}
            )
            for n in range(100)
        ]
        recorded = run_load(daemon.port, moves, commands, 64)
        daemon.call("session.close", {"session_id": source})
        began = time.perf_counter()
        restored = daemon.call("session.restore", {"session_id": source, "path": "replay"})
        seconds = time.perf_counter() - began
        daemon.call("session.close", {"session_id": restored["session_id"]})
        return {
            "commands": commands + 1,
            "recorded_per_second": recorded["per_second"],
            "replay_restore_s": round(seconds, 2),
            "replayed_per_second": round((commands + 1) / seconds, 1),
            "skipped": len(restored["skipped"]),
        }
    finally:
        daemon.stop()


# --- blenders -----------------------------------------------------------------------------


def bench_blenders(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    most = max(counts["blenders"])
    blenders = [_Headless(workdir, f"blender-{n}") for n in range(most)]
    report: dict[str, Any] = {}
    each_total = counts["blender_requests"]
    try:
        direct = _parallel(
            [(b.port, msgspec.json.encode(TRIVIAL) + b"\n") for b in blenders], each_total
        )
        report["direct_all"] = direct
        for n in counts["blenders"]:
            ports = [b.port for b in blenders[:n]]
            extra = [arg for port in ports[1:] for arg in ("--addon-port", str(port))]
            data_dir = workdir / f"blenders-{n}"
            daemon = Daemon(data_dir, ports[0], blenders[0].env, extra=extra)
            try:
                loads = []
                for port in ports:
                    opened = daemon.call("session.open", {"blender": str(port)})["session_id"]
                    loads.append((daemon.port, daemon.command_line(opened, "get_scene_info")))
                report[str(n)] = _parallel(loads, each_total)
            finally:
                daemon.stop()
            report[f"{n}_daemons"] = _separate_daemons(workdir, blenders[:n], each_total)
        one = report[str(counts["blenders"][0])]["per_second"]
        for n in counts["blenders"][1:]:
            report[f"{n}_over_1"] = ratio(report[str(n)]["per_second"], one)
            report[f"{n}_daemons_over_1"] = ratio(report[f"{n}_daemons"]["per_second"], one)
    finally:
        for blender in blenders:
            blender.stop()
    return report


def _separate_daemons(workdir: Path, blenders: list[_Headless], each: int) -> dict[str, Any]:
    """The other way to use more cores: one daemon (its own data dir) per Blender."""
    daemons = [
        Daemon(workdir / f"separate-{len(blenders)}-{n}", b.port, b.env)
        for n, b in enumerate(blenders)
    ]
    try:
        loads = []
        for daemon in daemons:
            opened = daemon.call("session.open")["session_id"]
            loads.append((daemon.port, daemon.command_line(opened, "get_scene_info")))
        return _parallel(loads, each)
    finally:
        for daemon in daemons:
            daemon.stop()


def _parallel(loads: list[tuple[int, bytes]], each: int) -> dict[str, Any]:
    """One pipelined client (64 in flight) per load, all at once: the aggregate."""
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda p=port, r=request: results.append(run_load(p, r, each, 64)))
        for port, request in loads
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return {
        "clients": len(loads),
        "requests": each * len(loads),
        "per_second": round(each * len(loads) / seconds, 1),
        "per_client_per_second": [r["per_second"] for r in results],
    }


# --- clients ------------------------------------------------------------------------------


def bench_clients(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    blender = _Headless(workdir, "clients")
    data_dir = workdir / "clients"
    daemon = Daemon(data_dir, blender.port, blender.env)
    report: dict[str, Any] = {}
    try:
        opened = daemon.call("session.open", {"name": "crowd"})["session_id"]
        request = daemon.command_line(opened, "get_scene_info")
        for clients in counts["clients"]:
            each = max(counts["client_requests"] // clients, 10)
            report[str(clients)] = run_clients(daemon.port, request, each, clients)
    finally:
        daemon.stop()
        blender.stop()
    return report


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the targets name, side by side, where the run has them."""
    out: dict[str, Any] = {}
    sessions = report.get("sessions", {})
    biggest = max((int(k) for k in sessions if k.isdigit()), default=None)
    if biggest is not None:
        row = sessions[str(biggest)]["second_start"]
        out[f"sessions_{biggest}"] = {
            "port_ready_s": row["port_ready_s"],
            "list_p50_ms": row["list_first_page"]["p50_ms"],
            "name_lookup_p50_ms": row["name_lookup"]["p50_ms"],
        }
    history = report.get("history", {})
    sizes = [int(k) for k in history if k.isdigit()]
    if sizes:
        row = history[str(max(sizes))]
        out[f"history_{max(sizes)}"] = {
            "show_page_p50_ms": row["show_page_1000"]["p50_ms"],
            "timeline_page_p50_ms": row["timeline_page_200"]["p50_ms"],
            "rss_growth_mb": row["rss_growth_mb_with_two_readers"],
            "pong_p99_ms_two_readers": (row["pong_ms_two_readers"] or {}).get("p99"),
        }
    if "replay_restore" in history:
        out["replay_restore_s"] = history["replay_restore"]["replay_restore_s"]
    blenders = report.get("blenders", {})
    if "2_over_1" in blenders:
        out["two_blenders_over_one"] = blenders["2_over_1"]
        out["two_daemons_over_one"] = blenders["2_daemons_over_1"]
    return out


# --- batch (issue 16, item 7) ---------------------------------------------------------


def bench_batch(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """1,000 `create_object` through one `session.batch` against the same pipelined
    straight to an addon (64 in flight), alternated twice. The direct ones go to a
    second Blender that no daemon watches: sent to the daemon's own Blender they would
    be recorded as edits beside it, and the checkpoint that follows a burst of edits
    would land in the next batch's time."""
    total = counts["batch_commands"]
    blender = _Headless(workdir, "batch")
    bare = _Headless(workdir, "batch-direct")
    daemon = Daemon(workdir / "batch", blender.port, blender.env)
    report: dict[str, Any] = {"commands": total, "direct_s": [], "batch_s": []}
    try:
        session_id = daemon.call("session.open", {"name": "batch"})["session_id"]
        for round in range(2):
            direct = [
                msgspec.json.encode({"type": "create_object", "params": {
                    "kind": "cube", "name": f"D{round}-{n}"}}) + b"\n"
                for n in range(total)
            ]  # fmt: skip
            report["direct_s"].append(run_load(bare.port, direct, total, 64)["seconds"])
            commands = [
                {"type": "create_object", "params": {"kind": "cube", "name": f"B{round}-{n}"}}
                for n in range(total)
            ]
            began = time.perf_counter()
            done = daemon.call("session.batch", {"session_id": session_id, "commands": commands})
            report["batch_s"].append(round_s(time.perf_counter() - began))
            assert done["succeeded"] == total, done["failed"]
        report["batch_over_direct"] = ratio(min(report["batch_s"]), min(report["direct_s"]))
    finally:
        daemon.stop()
        blender.stop()
        bare.stop()
    return report


def round_s(seconds: float) -> float:
    return round(seconds, 4)
