"""The web timeline's HTTP side, against the real daemon and a real headless Blender:
the access rules (token, loopback Host, Origin, one-time links) and every /api/
endpoint's success and error cases, with the control ops' error codes."""

from __future__ import annotations

import gzip
import json
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .programs import Programs

pytestmark = pytest.mark.blender


@dataclass
class Http:
    base: str  # http://127.0.0.1:PORT
    token: str

    def raw(
        self,
        path: str,
        method: str = "GET",
        body: object = None,
        headers: dict[str, str] | None = None,
        bearer: bool = True,
    ) -> tuple[int, bytes, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        if bearer:
            request.add_header("Authorization", f"Bearer {self.token}")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=60) as reply:
                return reply.status, reply.read(), dict(reply.headers)
        except urllib.error.HTTPError as failure:
            return failure.code, failure.read(), dict(failure.headers)

    def json(self, path: str, method: str = "GET", body: object = None) -> tuple[int, Any]:
        status, data, _ = self.raw(path, method, body)
        return status, json.loads(data)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _exports_left() -> bool:
    try:
        return any(Path(tempfile.gettempdir()).glob("bss-web-export-*/*.tar.gz"))
    except FileNotFoundError:  # removed while listed
        return True


def web_of(programs: Programs) -> tuple[Http, str]:
    endpoint = json.loads((programs.data_dir / "control.json").read_text())
    token = (programs.data_dir / "control.token").read_text().strip()
    return Http(f"http://127.0.0.1:{endpoint['web_port']}", token), endpoint["web_url"]


@pytest.fixture
def live(programs: Programs) -> tuple[Programs, Http, str]:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    http, link = web_of(programs)
    return programs, http, link


def test_only_the_token_on_a_loopback_name_gets_in(live: tuple[Programs, Http, str]) -> None:
    programs, http, link = live
    for path in ("/", "/api/sessions", "/api/status", "/static/app.css", "/sessions/x"):
        status, body, _ = http.raw(path, bearer=False)
        assert status == 401 and b"blender-session web" in body, path
    assert (
        http.raw("/api/sessions", headers={"Authorization": "Bearer wrong"}, bearer=False)[0] == 401
    )
    status, _, headers = http.raw(link.removeprefix(http.base), bearer=False)
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session_cookie = cookie.split(";")[0]
    assert http.raw("/api/sessions", headers={"Cookie": session_cookie}, bearer=False)[0] == 200
    again = http.raw(link.removeprefix(http.base), bearer=False)  # one-time: used up
    assert again[0] == 401 and b"used already" in again[1]
    for host in ("evil.example", "127.0.0.1.evil.example:80", "example.com"):
        assert http.raw("/api/sessions", headers={"Host": host})[0] == 403, host
    # A change by cookie needs this origin: a cross-site form post is refused.
    session = programs.json("open", "--name", "guarded")["session_id"]
    status, _, _ = http.raw(f"/api/sessions/{session}/checkpoint", "POST", {},
                            headers={"Cookie": session_cookie, "Origin": "http://evil.example"},
                            bearer=False)  # fmt: skip
    assert status == 403
    origin = {"Cookie": session_cookie, "Origin": http.base, "Content-Type": "application/json"}
    status, _, _ = http.raw(
        f"/api/sessions/{session}/checkpoint", "POST", {}, headers=origin, bearer=False
    )
    assert status == 200
    fresh = programs.json("web", "--no-open")["url"]  # blender-session web: a new link
    assert http.raw(fresh.removeprefix(http.base), bearer=False)[0] == 303
    page = http.raw("/", headers={"Cookie": session_cookie}, bearer=False)
    assert page[0] == 200 and "default-src 'none'" in page[2]["content-security-policy"]
    assert b"https://" not in page[1] and b"http://" not in page[1]  # nothing external


def test_every_endpoint_answers_and_refuses_as_the_ops_do(
    live: tuple[Programs, Http, str], tmp_path: Path
) -> None:
    programs, http, _ = live
    session = programs.json("open", "--name", "api")["session_id"]
    programs.json("cmd", "-s", session, "create_object", "kind=cube", "name=A")
    programs.json("cmd", "-s", session, "transform_object", "name=A", "location=[3,0,0]")
    ghost = "scene-20200101-000000-00000000"

    status, listed = http.json("/api/sessions")
    assert status == 200 and [s["session_id"] for s in listed["sessions"]] == [session]
    assert http.json("/api/sessions?q=A")[1]["sessions"][0]["session_id"] == session  # an object
    assert http.json("/api/sessions?q=zzz")[1]["sessions"] == []
    assert http.json("/api/sessions?limit=x")[0] == 400
    assert http.json("/api/sessions?bogus=1")[1]["error"]["code"] == "invalid_params"
    status, shown = http.json(f"/api/sessions/{session}")
    assert status == 200 and shown["status"] == "open" and len(shown["data"]["commands"]) == 2
    for bad in ("nope", ghost, "..%2F..%2Fcontrol.token"):
        status, body = http.json(f"/api/sessions/{bad}")
        assert status == 404 and body["error"]["code"] == "not_found", bad
    status, steps = http.json(f"/api/sessions/{session}/timeline?after_seq=0&limit=10")
    assert status == 200 and [e["type"] for e in steps["entries"] if e["kind"] == "command"] == [
        "create_object", "transform_object"
    ]  # fmt: skip
    status, diff = http.json(f"/api/sessions/{session}/diff?from=1&to=2")
    assert status == 200 and [c["name"] for c in diff["changed"]] == ["A"]
    assert http.json(f"/api/sessions/{session}/diff?from=x")[0] == 400
    assert http.json(f"/api/sessions/{session}/diff?from=99")[0] == 400
    status, png, headers = http.raw(f"/api/sessions/{session}/thumbnail.png")
    assert status == 200 and png.startswith(b"\x89PNG") and headers["content-type"] == "image/png"
    assert http.json(f"/api/sessions/{ghost}/thumbnail.png")[0] == 404

    status, made = http.json(f"/api/sessions/{session}/checkpoint", "POST", {"label": "before"})
    assert status == 200 and made["seq"] == 2
    status, kept = http.json(f"/api/sessions/{session}/checkpoints/2/state")
    assert status == 200 and [o["location"] for o in kept["objects"]] == [[3.0, 0.0, 0.0]]
    assert http.json(f"/api/sessions/{session}/checkpoints/1/state")[0] == 404  # none at 1
    assert http.json(f"/api/sessions/{ghost}/checkpoints/0/state")[0] == 404
    assert http.json(f"/api/sessions/{session}/rewind", "POST", {})[0] == 400  # no to_seq
    status, rewound = http.json(f"/api/sessions/{session}/rewind", "POST", {"to_seq": 1})
    assert status == 200 and rewound["to_seq"] == 1
    assert programs.json("state", session)["scene"]["objects"][0]["location"] == [0.0, 0.0, 0.0]
    assert http.json(f"/api/sessions/{session}/teleport", "POST", {})[0] == 404
    status, refused = http.json(f"/api/sessions/{session}/rewind", "POST", ["x"])
    assert status == 400 and "a JSON object" in refused["error"]["message"]
    status, _, _ = http.raw(f"/api/sessions/{session}/close", "POST", body=None,
                            headers={"Content-Type": "application/json"})  # fmt: skip
    assert status == 200  # no body: no params
    status, again = http.json(f"/api/sessions/{session}/close", "POST", {})
    assert status == 409 and again["error"]["code"] == "conflict"
    status, restored = http.json(f"/api/sessions/{session}/restore", "POST", {"path": "state"})
    assert status == 200 and restored["path"] == "state"
    assert http.json(f"/api/sessions/{ghost}/restore", "POST", {})[0] == 404
    assert http.json(f"/api/sessions/{restored['session_id']}", "DELETE")[0] == 409  # open
    status, archive, headers = http.raw(f"/api/sessions/{session}/export.tar.gz")
    assert status == 200 and gzip.decompress(archive)[:100]
    assert headers["content-disposition"].endswith(f'{session}.tar.gz"')
    deadline = time.monotonic() + 10  # the archive is removed once sent
    while _exports_left():
        assert time.monotonic() < deadline, "the exported archive was left behind"
        http.raw("/api/status")  # a round trip as the pace
    status, deleted = http.json(f"/api/sessions/{session}", "DELETE")
    assert status == 200 and deleted["session_id"] == session
    assert http.json(f"/api/sessions/{session}")[0] == 404


def test_events_stream_starts_with_the_status(live: tuple[Programs, Http, str]) -> None:
    _, http, _ = live
    request = urllib.request.Request(http.base + "/api/events")
    request.add_header("Authorization", f"Bearer {http.token}")
    with urllib.request.urlopen(request, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.readline() == b"event: watching\n"
        assert stream.readline().startswith(b'data: {"daemon_version"')
