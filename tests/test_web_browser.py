"""The web timeline in a real browser: Playwright driving Debian's chromium (nothing is
downloaded), the real daemon and a real headless Blender. Screenshots are saved beside
the test (and into docs/ with BSS_WEB_SCREENSHOTS=docs, for the README)."""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import blender_procs
from .programs import Programs
from .test_web_api import web_of

pytestmark = pytest.mark.blender
CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def browser() -> Iterator[Any]:
    blender_procs.require(os.path.exists(CHROMIUM), "Debian's chromium (apt-get install chromium)")
    blender_procs.require(
        importlib.util.find_spec("playwright") is not None, "playwright (./scripts/setup)"
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


def keep(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("BSS_WEB_SCREENSHOTS")
    if target:
        shutil.copy(path, ROOT / target / name)
    return path


def test_gallery_live_page_rewind_diff_and_export(
    programs: Programs, browser: Any, tmp_path: Path
) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    saved = programs.json("open", "--name", "chair study")["session_id"]
    for name, kind, where in (("Seat", "cube", "[0,0,1]"), ("Back", "cube", "[0,-1,2]")):
        programs.json("cmd", "-s", saved, "create_object", f"kind={kind}", f"name={name}",
                      f"location={where}")  # fmt: skip
    programs.cli("set-data", "-s", saved, "brief", '{"client": "ACME"}')
    programs.json("close", saved)
    thumbnail = programs.data_dir / "sessions" / f"{saved}.png"
    deadline = time.monotonic() + 60  # rendered after close answers
    while not thumbnail.exists():
        assert time.monotonic() < deadline
        programs.json("status")
    live = programs.json("open", "--name", "live scene")["session_id"]
    _, link = web_of(programs)

    # bypass_csp: the test's own waits evaluate strings; the page's CSP is checked in test_web_api
    page = browser.new_context(accept_downloads=True, bypass_csp=True).new_page()
    page.goto(link)  # the one-time link: a cookie, then the gallery at /
    assert page.url.endswith("/")
    cards = page.locator(".card")
    cards.filter(has_text="live scene").wait_for()
    assert cards.count() == 2
    image = page.locator(f'.card[data-session="{saved}"] img')
    image.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert "recording" in page.locator(f'.card[data-session="{live}"]').inner_text()
    page.fill("#q", "acme")  # the free-form data finds its session (objects: test_web_api)
    page.wait_for_function("document.querySelectorAll('.card').length === 1")
    page.fill("#q", "")
    page.wait_for_function("document.querySelectorAll('.card').length === 2")
    keep(page, tmp_path, "web-gallery.png")

    page.click(f'.card[data-session="{live}"]')
    page.wait_for_url(f"**/sessions/{live}")
    page.locator("#live").filter(has_text="Blender").wait_for()
    sent_at = time.monotonic()
    programs.json("cmd", "-s", live, "create_object", "kind=cube", "name=Box", "location=[1,2,3]")
    row = page.locator("#timeline tbody tr", has_text="create_object")
    row.wait_for(timeout=5000)
    assert time.monotonic() - sent_at < 1.0 + _cli_seconds(programs)
    created = int(row.get_attribute("data-seq") or 0)
    programs.json("cmd", "-s", live, "transform_object", "name=Box", "location=[9,9,9]")
    page.locator("#timeline tbody tr", has_text="transform_object").wait_for(timeout=5000)
    page.locator(f'#timeline tbody tr[data-seq="{created}"] button.rewind').click()
    page.locator("#said").filter(has_text=f"rewound to step {created}").wait_for(timeout=30000)
    box = next(o for o in programs.json("state", live)["scene"]["objects"] if o["name"] == "Box")
    assert box["location"] == [1.0, 2.0, 3.0]
    # Checkpoints are drawn from above (the rewind's holds the Box: one dot).
    page.locator("#timeline svg.map circle").first.wait_for()
    page.fill("#diff-from", "0")
    page.click("#diff-form button")
    page.locator("#diff").filter(has_text="added   Box").wait_for()
    page.locator("#timeline tbody tr", has_text="create_object").first.click()
    page.locator("#step").filter(has_text='"kind": "cube"').wait_for()
    keep(page, tmp_path, "web-session.png")

    page.goto(link.split("/?")[0] + f"/sessions/{saved}")
    page.locator("h1").filter(has_text="chair study").wait_for()
    assert "ACME" in page.locator("#data").inner_text()
    with page.expect_download() as downloading:
        page.click("#export")
    archive = downloading.value.path()
    assert gzip.decompress(Path(archive).read_bytes())  # a gzip archive came down
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("[data-action=delete]")  # after a confirmation, and back to the gallery
    page.wait_for_url(link.split("/?")[0] + "/")
    assert asked and saved in asked[0]
    page.locator(f'.card[data-session="{live}"]').wait_for()
    assert page.locator(f'.card[data-session="{saved}"]').count() == 0
    assert programs.cli("show", saved, check=False).returncode == 1


def _cli_seconds(programs: Programs) -> float:
    """How long one CLI run takes here: the time the command above spent before it
    reached the daemon is not the page's."""
    began = time.monotonic()
    programs.json("status")
    return time.monotonic() - began


def test_without_the_cookie_the_browser_gets_401_and_nothing_else(
    programs: Programs, browser: Any
) -> None:
    programs.start_daemon()
    http, _ = web_of(programs)
    page = browser.new_page()
    for path in ("/", "/api/sessions", "/static/session.js"):
        answer = page.goto(http.base + path)
        assert answer.status == 401, path
        assert "blender-session web" in page.content()
