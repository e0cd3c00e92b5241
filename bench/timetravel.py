"""Time travel (issue 14), measured against a real headless Blender:

- rewind: a 10,000-command session over a 1,000-object scene (the objects made by
  one apply_state, then transforms of random objects), rewound to random steps: p50,
  p99, how many steps each replayed, and the daemon's RSS before and after;
- checkpoint_cost: the same pipelined transforms with the default checkpoint policy
  and with periodic checkpoints off, in the same Blender: the ratio;
- diff: two steps of a session whose scene holds 10,000 objects, most of them moved;
- close: closing a session of 10,000 objects (its final checkpoint; the thumbnail is
  rendered after close answers);
- disk: the checkpoints' bytes per 1,000 commands of the rewind session.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from bench.common import Daemon, percentiles_ms, ratio, run_load
from tests import blender_procs

# fmt: off
FULL = {"tt_commands": 10_000, "tt_objects": 1000, "tt_rewinds": 30, "tt_big": 10_000,
        "tt_cost_commands": 80_000}
SMOKE = {"tt_commands": 300, "tt_objects": 50, "tt_rewinds": 3, "tt_big": 200,
         "tt_cost_commands": 400}
# fmt: on
TARGETS = {
    "rewind_p50_s_max": 1.0,
    "checkpoint_throughput_cost_max": 0.10,
    "diff_10000_objects_s_max": 0.2,
    "close_10000_objects_s_max": 1.0,
}


class _Blender:
    def __init__(self, workdir: Path, name: str) -> None:
        self.env = blender_procs.blender_env(workdir / f"{name}-home")
        self.process = blender_procs.start(
            blender_procs.headless_command("--factory-scene"), self.env
        )
        self.port = self.process.port


def _objects(count: int, prefix: str = "O") -> list[dict[str, Any]]:
    return [
        {
            "name": f"{prefix}{n}",
            "type": "MESH",
            "data_kind": "cube",
            "location": [n % 50, n // 50, 0.0],
            "rotation": [0.0, 0.0, 0.0],
            "scale": [1, 1, 1],
        }
        for n in range(count)
    ]


def _fill(daemon: Daemon, session_id: str, objects: int, commands: int) -> dict[str, Any]:
    """One apply_state of `objects` cubes, then `commands - 1` transforms of random ones,
    64 in flight."""
    made = daemon.call(
        "session.command",
        {
            "session_id": session_id,
            "type": "apply_state",
            "params": {"objects": _objects(objects), "prune": False},
        },
    )
    assert made["status"] == "success", made
    rng = random.Random(7)
    moves = [
        daemon.command_line(
            session_id,
            "transform_object",
            {"name": f"O{rng.randrange(objects)}", "location": [rng.random() * 10, 0, 1]},
        )
        for _ in range(500)
    ]
    return run_load(daemon.port, moves, commands - 1, 64)


def bench_rewind(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """With the default policy (a burst this short earns no periodic checkpoint under
    the budget: the longest replays), and with a checkpoint every 500 steps whatever
    they cost (the shortest)."""
    blender = _Blender(workdir, "rewind")
    try:
        return {
            "default_policy": _rewinds(counts, workdir / "rewind-default", blender, ()),
            "every_500_steps": _rewinds(
                counts, workdir / "rewind-every-500", blender, ("--checkpoint-budget", "100")
            ),
        }
    finally:
        blender.process.stop()


def _rewinds(
    counts: dict[str, Any], data_dir: Path, blender: _Blender, extra: tuple[str, ...]
) -> dict[str, Any]:
    daemon = Daemon(data_dir, blender.port, blender.env, extra=extra)
    try:
        session_id = daemon.call("session.open", {"name": "rewind"})["session_id"]
        loaded = _fill(daemon, session_id, counts["tt_objects"], counts["tt_commands"])
        last = daemon.call("session.timeline", {"session_id": session_id, "limit": 1})["last_seq"]
        rss_before = daemon.rss_mb()
        rng = random.Random(11)
        seconds, replayed = [], []
        rss_by_rewinds = {"0": rss_before}
        for done in range(1, counts["tt_rewinds"] + 1):
            target = rng.randrange(1, last)
            began = time.perf_counter()
            rewound = daemon.call("session.rewind", {"session_id": session_id, "to_seq": target})
            seconds.append(time.perf_counter() - began)
            replayed.append(rewound["replayed"])
            assert rewound["exact"], rewound
            if done % 10 == 0:
                rss_by_rewinds[str(done)] = daemon.rss_mb()
        rss_after = daemon.rss_mb()
        checkpoints = data_dir / "sessions" / f"{session_id}.checkpoints"
        disk = sum(p.stat().st_size for p in checkpoints.iterdir())
        kept = len(list(checkpoints.glob("*.blend")))
        return {
            "commands": counts["tt_commands"],
            "objects": counts["tt_objects"],
            "recorded_per_second": loaded["per_second"],
            "rewinds": len(seconds),
            **{
                k.replace("_ms", "_s"): round(v / 1000, 3)
                for k, v in percentiles_ms(seconds).items()
            },
            "replayed_steps_p50": sorted(replayed)[len(replayed) // 2],
            "replayed_steps_max": max(replayed),
            "checkpoints_kept": kept,
            "checkpoint_mb": round(disk / 2**20, 2),
            "checkpoint_mb_per_1000_commands": round(disk / 2**20 / (last / 1000), 3),
            "rss_mb_before_rewinds": rss_before,
            "rss_mb_after_rewinds": rss_after,
            "rss_mb_by_rewinds": rss_by_rewinds,
        }
    finally:
        daemon.stop()


def bench_checkpoint_cost(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Pipelined transforms with and without periodic checkpoints, alternated twice
    in the same Blender (each on a fresh session of the same scene)."""
    blender = _Blender(workdir, "cost")
    report: dict[str, Any] = {}
    try:
        for label, extra in (("with", ()), ("without", ("--checkpoint-every", "0"))) * 2:
            data_dir = workdir / f"cost-{label}-{len(report)}"
            daemon = Daemon(data_dir, blender.port, blender.env, extra=extra)
            try:
                session_id = daemon.call("session.open")["session_id"]
                loaded = _fill(daemon, session_id, counts["tt_objects"], counts["tt_cost_commands"])
                directory = data_dir / "sessions" / f"{session_id}.checkpoints"
                taken = len(list(directory.glob("*.blend")))
                disk = sum(p.stat().st_size for p in directory.iterdir())
                per_1000 = disk / 2**20 / (counts["tt_cost_commands"] / 1000)
                report.setdefault(label, []).append(
                    {
                        "per_second": loaded["per_second"],
                        "checkpoints": taken,
                        "checkpoint_mb_per_1000_commands": round(per_1000, 3),
                    }
                )
                daemon.call("session.close", {"session_id": session_id})
            finally:
                daemon.stop()
        best = {k: max(r["per_second"] for r in v) for k, v in report.items()}
        report["slower_with_checkpoints"] = round(1 - ratio(best["with"], best["without"]), 3)
    finally:
        blender.process.stop()
    return report


def bench_diff_and_close(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    big = counts["tt_big"]
    blender = _Blender(workdir, "big")
    daemon = Daemon(workdir / "big", blender.port, blender.env)
    try:
        session_id = daemon.call("session.open", {"name": "big"})["session_id"]
        began = time.perf_counter()
        first = daemon.call(
            "session.command",
            {
                "session_id": session_id,
                "type": "apply_state",
                "params": {"objects": _objects(big), "prune": False},
            },
        )["seq"]
        made_s = time.perf_counter() - began
        moved = _objects(big)
        for record in moved[: big * 9 // 10]:
            record["location"] = [record["location"][0] + 1, record["location"][1], 2.0]
        second = daemon.call(
            "session.command",
            {
                "session_id": session_id,
                "type": "apply_state",
                "params": {"objects": moved, "prune": False},
            },
        )["seq"]
        samples = []
        for _ in range(5):
            began = time.perf_counter()
            changed = daemon.call(
                "session.diff", {"session_id": session_id, "from_seq": first, "to_seq": second}
            )
            samples.append(time.perf_counter() - began)
        assert len(changed["changed"]) == big * 9 // 10, len(changed["changed"])
        began = time.perf_counter()
        daemon.call("session.close", {"session_id": session_id})
        close_s = time.perf_counter() - began
        return {
            "objects": big,
            "apply_state_s": round(made_s, 2),
            "diff_changed_objects": len(changed["changed"]),
            "diff_s": {
                k.replace("_ms", "_s"): round(v / 1000, 3)
                for k, v in percentiles_ms(samples).items()
            },
            "close_s": round(close_s, 3),
        }
    finally:
        daemon.stop()
        blender.process.stop()


def summary(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for policy in ("default_policy", "every_500_steps"):
        if "rewind" not in report:
            break
        rewind = report["rewind"][policy]
        out[f"rewind_{policy}"] = {
            key: rewind.get(key)
            for key in (
                "p50_s",
                "p99_s",
                "checkpoint_mb_per_1000_commands",
                "rss_mb_before_rewinds",
                "rss_mb_after_rewinds",
                "replayed_steps_p50",
            )
        }
    if "checkpoint_cost" in report:
        out["checkpoint_slower"] = report["checkpoint_cost"]["slower_with_checkpoints"]
    if "diff_and_close" in report:
        big = report["diff_and_close"]
        out["diff_p50_s"] = big["diff_s"].get("p50_s")
        out["close_s"] = big["close_s"]
    return out
