"""The fourth fuzz surface: the daemon's link to Blender, against a fake addon that
answers with hostile replies. The real daemon process connects to it; hypothesis makes
what the fake answers to the next scene command or ping (garbage, wrong shapes, wrong
ids, unreadable strings, numbers out of range, deep nesting, stray events, id-less
errors, a close mid-line). After each input the daemon must be alive, answer `status`,
and have logged no unhandled exception; at the end the session's record must be
readable by the CLI.

FUZZ_EXAMPLES sets the inputs (default 200 here, derandomized: each costs a reconnect
or a heartbeat timeout); a run with it set draws new ones (a campaign).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.clients.client import find_endpoint

from .programs import Programs

pytestmark = pytest.mark.blender
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
CAMPAIGN = "FUZZ_EXAMPLES" in os.environ
BOUND_S = 20.0
# Log events that mean an exception reached code that did not expect it.
UNHANDLED = ('"link_failed"', '"op_failed"', '"command_failed"', '"command_finish_failed"',
             '"late_outcome_failed"', '"delivery_failed"', '"connection_failed"')  # fmt: skip


class HostileAddon:
    """Speaks the addon link well enough to be connected to (hello, subscribe, attach,
    pings), and answers the next scene command or ping with `reply`, a template in
    which b"{ID}" becomes the request's id."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply_to: str | None = None  # "command" or "ping"
        self.reply = b""
        self.close_after = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, target: str, reply: bytes, close_after: bool) -> None:
        with self.lock:
            self.reply_to, self.reply, self.close_after = target, reply, close_after

    def _accept(self) -> None:
        while True:
            sock, _ = self.listener.accept()
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError), sock, sock.makefile("rb") as reader:
            for line in reader:
                try:
                    request = json.loads(line)
                except ValueError:
                    continue
                data, close = self._answer(request)
                try:
                    sock.sendall(data)
                except OSError:
                    return
                if close:
                    return

    def _answer(self, request: dict[str, Any]) -> tuple[bytes, bool]:
        kind, request_id = request.get("type"), json.dumps(request.get("id")).encode()
        with self.lock:
            target = "ping" if kind == "ping" else "command"
            armed = kind not in ("hello", "subscribe", "attach_session") and self.reply_to == target
            if armed:
                reply, close = self.reply.replace(b"{ID}", request_id), self.close_after
                self.reply_to = None
                return reply, close
        result: object = {}
        if kind == "hello":
            result = {"protocol": 1, "addon_version": "hostile", "blender_version": "5.0.1",
                      "file": "", "scene": "Scene", "commands": [],
                      "instance_id": "hostile-1"}  # fmt: skip
        elif kind == "ping":
            result = {"pong": True, "main_thread": {"busy": False, "busy_for_ms": 0,
                                                    "queue_depth": 0}}  # fmt: skip
        elif kind == "get_scene_info":
            result = {"name": "Scene", "object_count": 0, "objects": [], "materials_count": 0}
        body = {"id": request.get("id"), "status": "success", "result": result}
        return json.dumps(body).encode() + b"\n", False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)  # fmt: skip
_ids = st.sampled_from([b"{ID}", b"null", b"999999", b'"x"', b"true", b"{ID}", b"{ID}"])
_unreadable = st.sampled_from([b'"\\ud800"', b"1e400", b"9" * 30, b"NaN", b'"\xff"',
                               b"[" * 2000 + b"]" * 2000, b'"\xed\xa0\x80"'])  # fmt: skip


def _response(values: Any) -> st.SearchStrategy[bytes]:  # a strategy of JSON
    return st.builds(
        lambda rid, status, body: b'{"id": %s, "status": %s, %s}\n' % (rid, status, body),
        _ids,
        st.sampled_from([b'"success"', b'"error"', b'"weird"', b"1"]),
        st.one_of(
            values.map(lambda v: b'"result": ' + v),
            st.tuples(st.text(max_size=12), st.text(max_size=40)).map(
                lambda cm: (
                    b'"code": %s, "message": %s'
                    % (json.dumps(cm[0]).encode(), json.dumps(cm[1]).encode())
                )
            ),
        ),
    )


replies = st.one_of(
    st.binary(max_size=300).map(lambda b: b + b"\n"),
    json_values.map(lambda v: json.dumps(v).encode() + b"\n"),
    _response(json_values.map(lambda v: json.dumps(v).encode())),
    _response(_unreadable),
    st.builds(
        lambda data: b'{"event": "scene_changed", "seq": 1, "data": %s}\n' % data,
        json_values.map(lambda v: json.dumps(v).encode()) | _unreadable,
    ),
    st.integers(1, 200_000).map(lambda n: b"\n" * n),
    st.just(b'{"status": "error", "code": "bad_request", "message": "no id"}\n'),
    st.binary(min_size=1, max_size=50),  # no newline, then maybe a close
)


def _line(token: str, request_id: int, op: str, params: dict[str, Any]) -> bytes:
    body = {"token": token, "id": request_id, "op": op, "params": params}
    return json.dumps(body).encode() + b"\n"


def test_fuzzed_replies_never_crash_or_wedge_the_daemons_link(programs: Programs) -> None:
    addon = HostileAddon()
    programs.addon_port = addon.port
    programs.start_daemon("--request-timeout", "0.5", "--heartbeat-timeout", "0.5",
                          "--heartbeat-interval", "0.1")  # fmt: skip
    programs.wait_connected()
    session_id = programs.json("open", "--name", "hostile")["session_id"]
    _, port, token = find_endpoint(programs.data_dir)
    control = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
    reader = control.makefile("rb")
    counter = iter(range(1, 10**9))

    def call(op: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = next(counter)
        control.sendall(_line(token, request_id, op, params))
        reply: dict[str, Any] = json.loads(reader.readline())
        assert reply["id"] == request_id, reply
        return reply

    tried = recorded = 0
    began = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not CAMPAIGN,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(st.sampled_from(["command", "command", "ping"]), replies, st.booleans())
    def one_input(target: str, reply: bytes, close_after: bool) -> None:
        nonlocal tried, recorded
        tried += 1
        deadline = time.monotonic() + BOUND_S
        while not call("status", {})["result"]["blender"]["connected"]:  # the link is back
            assert time.monotonic() < deadline, "the link did not come back"
        addon.arm(target, reply, close_after)
        answer = call("session.command", {"session_id": session_id, "type": "get_scene_info"})
        recorded += answer.get("error", {}).get("code") not in ("blender_unavailable",)
        assert programs.daemon is not None
        assert programs.daemon.poll() is None, "".join(list(programs.daemon_log)[-20:])
        assert call("status", {})["ok"]

    one_input()
    elapsed = time.monotonic() - began
    control.close()
    print(f"fuzz: {tried} hostile replies on the daemon's link in {elapsed:.1f} s "
          f"({tried / elapsed:.0f}/s)")  # fmt: skip
    unhandled = [line for line in programs.daemon_log if any(e in line for e in UNHANDLED)]
    assert unhandled == [], unhandled[:3]
    programs.wait_connected()
    closed = programs.json("close", session_id)  # nothing left in flight; the record reads
    shown = programs.json("show", closed["session_id"])
    statuses = {c["status"] for c in shown["data"]["commands"]}
    assert statuses <= {"success", "error", "unknown"}
    assert shown["data"]["command_count"] >= recorded > 0
