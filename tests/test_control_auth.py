"""The control port's door: the token on every request, what an unauthenticated
peer can and cannot make the daemon do (small lines, a deadline, a connection cap),
and bad input with the right token answered with its id. Real loopback sockets; the
Blender side is the fake addon."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from daemon.main import Daemon
from daemon.protocol.limits import PRE_AUTH_FRAME_BYTES

from .fake_addon import FakeAddon
from .helpers import (
    WAIT_S,
    AsyncClient,
    raw_exchange,
    ready_client,
    running_daemon,
    token_of,
)


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 10_000])
async def test_missing_or_wrong_token_is_unauthorized_and_nothing_else(
    daemon: Daemon, token: str | None
) -> None:
    assert daemon.control_port is not None
    request: dict[str, Any] = {"id": 1, "op": "session.list"}
    if token is not None:
        request["token"] = token
    replies = await raw_exchange(daemon.control_port, msgspec.json.encode(request) + b"\n")
    assert replies == [
        {"id": 1, "ok": False, "error": {"code": "unauthorized", "message": "unauthorized"}}
    ]


async def test_malformed_line_without_token_says_only_unauthorized(daemon: Daemon) -> None:
    assert daemon.control_port is not None
    replies = await raw_exchange(daemon.control_port, b"{not json\n")
    assert replies[0]["error"] == {"code": "unauthorized", "message": "unauthorized"}


async def test_malformed_line_with_token_gets_bad_request_and_connection_goes_on(
    daemon: Daemon,
) -> None:
    assert daemon.control_port is not None
    token = token_of(daemon)
    data = (
        b'{"id": 1, "op": 7, "token": "%s"}\n' % token.encode()
        + b'{"id": 2, "op": "status", "token": "%s"}\n' % token.encode()
    )
    first, second = await raw_exchange(daemon.control_port, data)
    assert first["id"] == 1 and first["error"]["code"] == "bad_request"
    assert second["id"] == 2 and second["ok"] is True


async def test_oversized_frame_is_bad_request_then_close_and_daemon_serves_on(
    daemon: Daemon, client: AsyncClient
) -> None:
    assert daemon.control_port is not None
    status = b'{"id": 0, "op": "status", "token": "%s"}\n' % token_of(daemon).encode()
    replies = await raw_exchange(daemon.control_port, status + b"{" + b" " * (17 * 1024 * 1024))
    assert replies[0]["ok"] and replies[1]["error"]["code"] == "bad_request"
    assert "over the limit of 16777216" in replies[1]["error"]["message"]
    assert (await client.ok("status"))["blender"]["connected"] is True


async def test_before_the_token_lines_are_small_and_say_so(daemon: Daemon) -> None:
    """Item 11: an unauthenticated connection cannot make the daemon buffer 16 MiB."""
    assert daemon.control_port is not None
    replies = await raw_exchange(daemon.control_port, b"{" + b" " * (PRE_AUTH_FRAME_BYTES + 10))
    (refused,) = replies
    assert refused["error"]["code"] == "bad_request"
    assert f"limited to {PRE_AUTH_FRAME_BYTES} bytes" in refused["error"]["message"]


async def test_memory_of_many_unauthenticated_connections_stays_bounded(daemon: Daemon) -> None:
    """48 connections that each send 60 KiB and never a newline: the daemon holds about
    their lines, not 16 MiB each (measured as its Python heap growth)."""
    assert daemon.control_port is not None
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    streams = []
    for _ in range(48):
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.control_port)
        await stream.send_all(b"{" + b" " * (60 * 1024))
        streams.append(stream)
    assert daemon.control is not None
    with trio.fail_after(WAIT_S):  # until the daemon holds every one of those lines
        while sum(c.conn.buffered_bytes for c in daemon.control.connections) < 48 * 60 * 1024:
            await trio.testing.wait_all_tasks_blocked()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 48 * 200 * 1024, grown  # ~60 KiB each, with room for buffers
    for stream in streams:
        await stream.aclose()


async def test_a_connection_that_never_shows_the_token_is_closed_at_the_deadline(
    tmp_path: Path, fake: FakeAddon
) -> None:
    async with running_daemon(tmp_path / "data", fake.port) as daemon:
        assert daemon.control_port is not None and daemon.control is not None
        daemon.control.auth_deadline_s = 0.5
        stream = await trio.open_tcp_stream("127.0.0.1", daemon.control_port)
        opened_at = trio.current_time()
        received = b""
        with trio.fail_after(WAIT_S):
            while chunk := await stream.receive_some(65536):
                received += chunk
        assert trio.current_time() - opened_at >= 0.5
        reply = msgspec.json.decode(received)
        assert reply["error"]["code"] == "unauthorized"
        assert "no request with the token within 0.5 s" in reply["error"]["message"]
        await stream.aclose()


async def test_connections_over_the_cap_are_refused_at_once_and_logged_once(
    tmp_path: Path, fake: FakeAddon
) -> None:
    """Item 10: idle connections cannot lock every client out; the one over the cap is
    told why, and the log says so once per interval, not per connection."""
    async with running_daemon(tmp_path / "data", fake.port, max_connections=20) as daemon:
        assert daemon.control_port is not None
        idle = [await trio.open_tcp_stream("127.0.0.1", daemon.control_port) for _ in range(19)]
        client = await ready_client(daemon)  # the 20th: served
        with capture_logs() as logs:
            for _ in range(30):
                extra = await trio.open_tcp_stream("127.0.0.1", daemon.control_port)
                with trio.fail_after(WAIT_S):
                    refusal = msgspec.json.decode(await extra.receive_some(65536))
                assert refusal["error"]["code"] == "busy"
                assert "20 control connections" in refusal["error"]["message"]
                await extra.aclose()
        refusals = [entry for entry in logs if entry["event"] == "connections_refused"]
        assert len(refusals) == 1
        assert (await client.ok("status"))["pid"] > 0  # the served one still is
        for stream in idle:
            await stream.aclose()
        await client.aclose()


@pytest.mark.parametrize(
    "params",
    [b'{"x": NaN}', b'{"x": "\\ud800"}', b"[" * 3000 + b"]" * 3000],
    ids=["nan", "lone-surrogate", "deep"],
)
async def test_bad_json_with_the_right_token_is_bad_request_with_its_id(
    daemon: Daemon, params: bytes
) -> None:
    """Item 21: a pipelining client must get every reply with its id."""
    assert daemon.control_port is not None
    token = token_of(daemon).encode()
    line = b'{"id": 41, "op": "status", "token": "%s", "params": %s}\n' % (token, params)
    follow = b'{"id": 42, "op": "status", "token": "%s"}\n' % token
    first, second = await raw_exchange(daemon.control_port, line + follow)
    assert first["id"] == 41 and first["error"]["code"] == "bad_request"
    assert second["id"] == 42 and second["ok"]


async def test_a_non_string_token_is_unauthorized_with_its_id(daemon: Daemon) -> None:
    assert daemon.control_port is not None
    (reply,) = await raw_exchange(daemon.control_port, b'{"id": 5, "op": "status", "token": 7}\n')
    assert reply == {
        "id": 5,
        "ok": False,
        "error": {"code": "unauthorized", "message": "unauthorized"},
    }


async def test_a_long_first_request_is_taken_when_its_token_comes_first(daemon: Daemon) -> None:
    """Every request of this project's clients starts with its token, so a 2 MiB first
    request (an apply_state snapshot from the CLI) gets through; a long first line
    without it is refused with the way out."""
    assert daemon.control_port is not None
    token = token_of(daemon).encode()
    value = b'"' + b"x" * (2 << 20) + b'"'
    first = b'{"token": "%s", "id": 1, "op": "status", "params": {}, "x": %s}\n' % (token, value)
    (reply,) = await raw_exchange(daemon.control_port, first)
    assert reply["id"] == 1 and reply["ok"]
    last = b'{"id": 2, "op": "status", "x": %s, "token": "%s"}\n' % (value, token)
    (refused,) = await raw_exchange(daemon.control_port, last)
    assert refused["error"]["code"] == "bad_request"
    assert 'put "token" first' in refused["error"]["message"]
    wrong = b'{"token": "wrong", "id": 3, "op": "status", "x": %s}\n' % value
    (refused,) = await raw_exchange(daemon.control_port, wrong)
    assert refused["error"]["code"] == "bad_request"  # too long, and never authenticated


async def test_a_watch_read_just_before_the_client_hangs_up_still_ends(daemon: Daemon) -> None:
    """Found by the long fuzz campaign: a `watch` as the last line, without its newline,
    then EOF. The line is read at EOF, and its task started after the connection's
    reader ended: it was never cancelled, and streamed heartbeats for ever."""
    assert daemon.control_port is not None
    token = token_of(daemon).encode()
    with trio.fail_after(WAIT_S):  # raw_exchange reads until the daemon closes
        replies = await raw_exchange(
            daemon.control_port, b'{"token": "%s", "id": 1, "op": "watch"}' % token
        )
    assert all(reply["id"] == 1 for reply in replies)
