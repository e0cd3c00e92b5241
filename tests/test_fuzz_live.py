"""A bounded fuzz campaign against the live addon (headless Blender, in its three
framings), the live control port and the live proxy port: hypothesis makes the inputs,
a socket sends them. Each input goes on a fresh connection, which is then half-closed;
the server must answer or close within a bound (no hang), keep running (no crash), and
serve a normal request afterwards. (The daemon's link against a hostile addon is the
fourth surface: test_fuzz_link.py.)

FUZZ_EXAMPLES sets inputs per target (default 1000); the count tried is printed. The
default run is derandomized, so CI tries the same inputs every time; a run with
FUZZ_EXAMPLES set draws new ones (a campaign).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.clients.client import find_endpoint

from .programs import Programs

pytestmark = pytest.mark.blender
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
CAMPAIGN = "FUZZ_EXAMPLES" in os.environ
# How long a server may take to answer and close after the client's EOF.
ANSWER_BOUND_S = 20.0
HEALTH_EVERY = 25

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# save_blend and open_blend take paths: fuzzing them would write or read anywhere.
ADDON_TYPES = ["hello", "ping", "get_scene_info", "get_object_info", "get_state",
               "create_object", "transform_object", "delete_object", "rename_object",
               "select_objects", "set_material", "apply_state", "subscribe",
               "attach_session", "execute_code", "render_thumbnail",
               "get_viewport_screenshot"]  # fmt: skip
CONTROL_OPS = ["status", "session.open", "session.command", "session.state", "session.close",
               "session.list", "session.show", "session.delete", "session.stats",
               "session.restore", "session.set_data", "session.thumbnail", "session.cleanup",
               "watch"]  # fmt: skip


def _requests(kinds: list[str], key: str) -> st.SearchStrategy[dict[str, Any]]:
    """Messages shaped like requests, with anything in their fields."""
    return st.fixed_dictionaries(
        {key: st.sampled_from(kinds) | st.text(max_size=20)},
        optional={"id": json_values, "params": json_values | st.dictionaries(
            st.sampled_from(["name", "kind", "location", "session_id", "type", "objects",
                             "events", "code", "value", "key", "path", "width"]),
            json_values, max_size=4)},
    )  # fmt: skip


def _payloads(requests: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    lines = st.lists(requests.map(lambda r: json.dumps(r).encode() + b"\n"), max_size=4)
    return st.one_of(
        st.binary(max_size=2048),
        lines.map(b"".join),
        json_values.map(lambda v: json.dumps(v).encode() + b"\n"),
        requests.map(lambda r: json.dumps(r).encode()),  # bare JSON, no newline
        requests.map(lambda r: struct.pack(">I", len(json.dumps(r))) + json.dumps(r).encode()),
        st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n + b"\n"),
        st.integers(1, 100_000).map(lambda n: b'{"id":1,"params":' + b"[" * n + b"\n"),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass") + b"\n"),
        st.binary(min_size=4, max_size=8).map(lambda b: b"\x00\x00" + b),  # length prefixes
    )


def _send_and_wait_for_close(port: int, payload: bytes) -> None:
    deadline = time.monotonic() + ANSWER_BOUND_S
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_BOUND_S) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                # Each read is bounded by the socket timeout, and the whole exchange by
                # the deadline (a server that keeps sending must also close in time).
                assert time.monotonic() < deadline, "the server did not close in time"
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server refused the input by closing: fine


def _campaign(
    port: int,
    payloads: st.SearchStrategy[bytes],
    healthy: Callable[[], None],
    alive: Callable[[], None],
    surface: str,
) -> int:
    tried = 0
    began = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not CAMPAIGN,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(payloads)
    def one_input(payload: bytes) -> None:
        nonlocal tried
        tried += 1
        _send_and_wait_for_close(port, payload)
        alive()  # fail at the input that killed it, not at a later one
        if tried % HEALTH_EVERY == 0:
            healthy()

    one_input()
    healthy()
    elapsed = time.monotonic() - began
    print(f"fuzz: {tried} inputs against the {surface} in {elapsed:.1f} s "
          f"({tried / elapsed:.0f}/s)")  # fmt: skip
    return tried


@pytest.fixture
def running(programs: Programs) -> Programs:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    return programs


def test_fuzzed_input_never_crashes_or_hangs_the_live_addon(running: Programs) -> None:
    assert running.blender is not None
    port = running.blender.port

    def healthy() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_BOUND_S) as sock:
            sock.sendall(b'{"id": "health", "type": "get_scene_info"}\n')
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["id"] == "health" and reply["status"] == "success", reply

    def alive() -> None:
        assert running.blender is not None
        assert running.blender.process.poll() is None, "".join(running.blender.output[-30:])

    tried = _campaign(port, _payloads(_requests(ADDON_TYPES, "type")), healthy, alive, "live addon")
    assert tried >= min(EXAMPLES, 50)
    assert running.json("status")["blender"]["connected"]  # the daemon's link survived too


def test_fuzzed_input_never_crashes_or_hangs_the_live_control_port(running: Programs) -> None:
    running.json("open", "--name", "fuzzed")
    _, port, token = find_endpoint(running.data_dir)
    requests = _requests(CONTROL_OPS, "op").flatmap(
        lambda r: st.sampled_from([r, {**r, "token": token}])
    )

    def healthy() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_BOUND_S) as sock:
            sock.sendall(json.dumps({"id": 7, "op": "status", "token": token}).encode() + b"\n")
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["id"] == 7 and reply["ok"], reply

    def alive() -> None:
        assert running.daemon is not None
        assert running.daemon.poll() is None, "".join(list(running.daemon_log)[-30:])

    tried = _campaign(port, _payloads(requests), healthy, alive, "live control port")
    assert tried >= min(EXAMPLES, 50)
    internal = [line for line in running.daemon_log if '"op_failed"' in line]
    assert internal == [], internal[:3]  # no input reached an unhandled exception


@pytest.fixture
def proxied(programs: Programs) -> Programs:
    programs.start_blender()
    programs.start_daemon("--proxy-port", "0")
    programs.wait_connected()
    return programs


def test_fuzzed_input_never_crashes_or_hangs_the_live_proxy_port(proxied: Programs) -> None:
    """The proxy takes no token: anything a local process sends it, in any framing."""
    proxied.json("open", "--name", "fuzzed-proxy")
    proxy_port = int(proxied.json("status")["proxy"].rsplit(":", 1)[1])

    def healthy() -> None:
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=ANSWER_BOUND_S) as sock:
            sock.sendall(b'{"type": "get_scene_info", "params": {}}\n')
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["status"] == "success", reply

    def alive() -> None:
        assert proxied.daemon is not None
        assert proxied.daemon.poll() is None, "".join(list(proxied.daemon_log)[-30:])

    tried = _campaign(
        proxy_port, _payloads(_requests(ADDON_TYPES, "type")), healthy, alive, "live proxy port"
    )
    assert tried >= min(EXAMPLES, 50)
    failures = [line for line in proxied.daemon_log if '"proxy_request_failed"' in line]
    assert failures == [], failures[:3]  # no input reached an unhandled exception
