"""The recording proxy against the addon it stands in front of (issue 15, item 10): a
blender-mcp-style client (bare JSON, no ids, no newline) sending `get_scene_info` to
a GUI Blender under xvfb (timer path), straight to the addon and through the daemon's
proxy (which records every request in the session), one at a time and 64 in flight on
one connection, in the same run and the same Blender."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import Daemon, blender_version, ratio, run_load, start_relay
from tests import blender_procs

FULL = {"proxy": 2000}
SMOKE = {"proxy": 30}
TARGETS = {
    "proxy_one_at_a_time_p50_ratio_max": 1.5,
    "proxy_one_at_a_time_p99_ratio_max": 1.5,
    "proxy_pipelined_rate_ratio_min": 0.5,
}
BARE_REQUEST = json.dumps({"type": "get_scene_info", "params": {}}).encode()


def bench_proxy(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    if not blender_procs.have_gui_blender():
        return {"skipped": "Debian's blender and xvfb-run are not installed"}
    env = blender_procs.blender_env(workdir / "proxy-home")
    blender = blender_procs.start(blender_procs.gui_command("--factory-scene"), env)
    daemon = relay = None
    try:
        daemon = Daemon(workdir / "proxy-data", blender.port, env, extra=["--proxy-port", "0"])
        proxy_port = int(daemon.call("status")["proxy"].rsplit(":", 1)[1])
        n = counts["proxy"]
        for port in (blender.port, proxy_port):  # warm up: the window is drawing at start
            run_load(port, BARE_REQUEST, 50, 1)
        direct_one = run_load(blender.port, BARE_REQUEST, n, 1)
        proxy_one = run_load(proxy_port, BARE_REQUEST, n, 1)
        direct_64 = run_load(blender.port, BARE_REQUEST, n * 8, 64)
        proxy_64 = run_load(proxy_port, BARE_REQUEST, n * 8, 64)
        # The floor of any proxy on this event loop: a trio relay that only copies bytes.
        relay, relay_port = start_relay("trio", blender.port)
        relay_one = run_load(relay_port, BARE_REQUEST, n, 1)
        over = {
            "one_at_a_time_p50": ratio(proxy_one["p50_ms"], direct_one["p50_ms"]),
            "one_at_a_time_p99": ratio(proxy_one["p99_ms"], direct_one["p99_ms"]),
            "pipelined_rate": ratio(proxy_64["per_second"], direct_64["per_second"]),
            "relay_one_at_a_time_p50": ratio(relay_one["p50_ms"], direct_one["p50_ms"]),
        }
        return {
            "blender": blender_version(blender.port),
            "direct": {"one_at_a_time": direct_one, "in_flight_64": direct_64},
            "proxy": {"one_at_a_time": proxy_one, "in_flight_64": proxy_64},
            "trio_relay": {"one_at_a_time": relay_one},
            "proxy_over_direct": over,
            "targets": {
                "one_at_a_time_p50_met": over["one_at_a_time_p50"]
                <= TARGETS["proxy_one_at_a_time_p50_ratio_max"],
                "one_at_a_time_p99_met": over["one_at_a_time_p99"]
                <= TARGETS["proxy_one_at_a_time_p99_ratio_max"],
                "pipelined_met": over["pipelined_rate"]
                >= TARGETS["proxy_pipelined_rate_ratio_min"],
            },
        }
    finally:
        if relay is not None:
            relay.terminate()
            relay.wait()
        if daemon is not None:
            daemon.stop()
        blender.stop()
