"""The web timeline (issue 17) in Debian's chromium, driven by Playwright: the gallery of
1,000 sessions and the page of a 100,000-step session, served and rendered (first
contentful paint, and until the gallery's cards / the timeline's rows are in); and the
daemon's command throughput with and without a session page open and watching, in
one run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import Daemon, run_load
from tests import blender_procs
from tests.records import session_id_for, write_closed

FULL = {"web_sessions": 1000, "web_steps": 100_000, "web_commands": 3000}
SMOKE = {"web_sessions": 20, "web_steps": 500, "web_commands": 200}
CHROMIUM = "/usr/bin/chromium"
_PAINT = "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"


def bench_web(counts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed"}
    if not os.path.exists(CHROMIUM):
        return {"skipped": "Debian's chromium is not installed"}
    data_dir = workdir / "web-data"
    sessions = data_dir / "sessions"
    sessions.mkdir(parents=True)
    data_dir.chmod(0o700)
    now = time.time() - counts["web_sessions"]
    for n in range(counts["web_sessions"]):
        write_closed(sessions, session_id_for(n), f"bench-{n}", 5, now + n)
    big = session_id_for(10**6)
    write_closed(sessions, big, "big", counts["web_steps"], time.time())
    env = blender_procs.blender_env(workdir / "web-home")
    blender = blender_procs.start(blender_procs.headless_command("--factory-scene"), env)
    daemon = Daemon(data_dir, blender.port, env)
    report: dict[str, Any] = {"sessions": counts["web_sessions"], "steps": counts["web_steps"]}
    try:
        link = json.loads((data_dir / "control.json").read_text())["web_url"]
        base = link.split("/?")[0]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_context(bypass_csp=True).new_page()
            page.goto(link)  # logs in (the cookie), lands on the gallery
            total = counts["web_sessions"] + 1
            report["gallery"] = _timed_page(
                page, base + "/", f"document.querySelectorAll('.card').length === {total}"
            )
            report["session_page"] = _timed_page(
                page, f"{base}/sessions/{big}",
                "document.querySelectorAll('#timeline tbody tr').length > 0",
            )  # fmt: skip
            opened = daemon.call("session.open", {"name": "watched"})["session_id"]
            request = daemon.command_line(opened, "get_scene_info")
            n = counts["web_commands"]
            run_load(daemon.port, request, 100, 8)  # warm up
            without = run_load(daemon.port, request, n, 8)
            page.goto(f"{base}/sessions/{opened}")
            page.wait_for_selector("#timeline tbody tr")
            watched = run_load(daemon.port, request, n, 8)
            shown = page.locator("#timeline tbody tr").count()
            report["throughput"] = {
                "without_page_per_s": without["per_second"],
                "with_page_watching_per_s": watched["per_second"],
                "ratio": round(watched["per_second"] / without["per_second"], 3),
                "rows_the_page_showed": shown,
            }
            browser.close()
    finally:
        daemon.stop()
        blender.stop()
    return report


def _timed_page(page: Any, url: str, rendered: str) -> dict[str, Any]:
    began = time.perf_counter()
    page.goto(url)
    page.wait_for_function(rendered, timeout=120_000)
    return {
        "rendered_s": round(time.perf_counter() - began, 3),
        "first_contentful_paint_ms": page.evaluate(_PAINT),
    }
