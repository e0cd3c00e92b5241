"""Knowing what answers on the addon port: stand-ins for the blender-mcp addon in both
framings, and a server that closes after each request. The daemon names each within
the heartbeat timeout, in its status (and so in the CLI), instead of hanging."""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from daemon.protocol.identify import (
    BLENDER_LAB_MCP,
    BLENDER_MCP_BARE,
    BLENDER_MCP_LENGTH,
    CLOSES_EACH_REQUEST,
    identify_length_reply,
    identify_nul_reply,
    identify_text_reply,
)

from .helpers import AsyncClient, running_daemon, token_of

UNKNOWN = {"status": "error", "message": "Unknown command type: hello"}


async def bare_json_blender_mcp(stream: trio.SocketStream) -> None:
    """blender-mcp's older framing: accumulate until json.loads works; reply bare."""
    buffer = b""
    while data := await stream.receive_some(8192):
        buffer += data
        try:
            json.loads(buffer)
        except ValueError:
            continue
        buffer = b""
        await stream.send_all(json.dumps(UNKNOWN).encode())


async def length_prefixed_blender_mcp(stream: trio.SocketStream) -> None:
    """blender-mcp's newer framing: a 4-byte length, then the body; reply the same way."""
    buffer = b""
    while data := await stream.receive_some(8192):
        buffer += data
        while len(buffer) >= 4:
            (size,) = struct.unpack(">I", buffer[:4])
            if len(buffer) < 4 + size:
                break  # an NDJSON hello reads as a 2 GB frame: wait forever, like the real one
            json.loads(buffer[4 : 4 + size])
            buffer = buffer[4 + size :]
            body = json.dumps({"status": "success", "result": {"name": "Scene"}}).encode()
            await stream.send_all(struct.pack(">I", len(body)) + body)


async def blender_lab_mcp(stream: trio.SocketStream) -> None:
    """The Blender Lab addon, as met on its port: one request per connection, ended by
    a NUL byte; our NUL-less hello times out its read, and it says so, NUL-terminated,
    then closes."""
    buffer = b""
    with trio.move_on_after(0.2):
        while b"\0" not in buffer and (data := await stream.receive_some(8192)):
            buffer += data
    await stream.send_all(b'{"status": "error", "message": "Client timed out"}\0')
    await stream.aclose()


async def closes_after_each_request(stream: trio.SocketStream) -> None:
    await stream.receive_some(8192)
    await stream.send_all(b"OK")
    await stream.aclose()


@pytest.mark.parametrize(
    ("handler", "found", "within_s"),
    [
        (bare_json_blender_mcp, BLENDER_MCP_BARE, 1.0),
        (length_prefixed_blender_mcp, BLENDER_MCP_LENGTH, 2.0 + 1.0),
        (closes_after_each_request, CLOSES_EACH_REQUEST, 1.0),
        (blender_lab_mcp, BLENDER_LAB_MCP, 1.0),
    ],
)
async def test_daemon_names_what_answers_on_the_addon_port(
    tmp_path: Path,
    nursery: trio.Nursery,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    found: str,
    within_s: float,
) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(trio.serve_listeners, handler, listeners)
    async with running_daemon(tmp_path / "data", port, heartbeat_timeout_s=1.0) as daemon:
        began = trio.current_time()
        with trio.fail_after(10):
            await daemon.link.wait_until(lambda link: link.snapshot.found != "")
        # Bare JSON answers at once; the silent length-prefixed one costs the hello
        # timeout plus the probe's answer.
        assert trio.current_time() - began < within_s
        assert daemon.control_port is not None
        client = await AsyncClient.connect(daemon.control_port, token_of(daemon))
        blender = (await client.ok("status"))["blender"]
        assert blender["found"].startswith(found)
        assert blender["connected"] is False
        assert "not the blender-scene-sessions addon" in blender["last_error"]
        assert "blender-session blender" in blender["last_error"]
        session_id = (await client.ok("session.open"))["session_id"]
        code, message = await client.error(
            "session.command", {"session_id": session_id, "type": "get_state"}
        )
        assert code == "blender_unavailable" and found in message
        await client.aclose()


def test_identify_recognises_blender_mcp_replies_only() -> None:
    assert identify_text_reply(json.dumps(UNKNOWN).encode()) == BLENDER_MCP_BARE
    assert identify_text_reply(b'{"status": "success", "result": {}}\n{"x": 1}') is None
    assert identify_text_reply(b"HTTP/1.1 400 Bad Request\r\n") is None
    body = json.dumps({"status": "success", "result": {}}).encode()
    assert identify_length_reply(struct.pack(">I", len(body)) + body) == BLENDER_MCP_LENGTH
    assert identify_length_reply(struct.pack(">I", len(body)) + body[:-1]) is None
    assert identify_nul_reply(b'{"status": "error", "message": "Client timed out"}\0') == (
        BLENDER_LAB_MCP
    )
    assert identify_nul_reply(b'{"status": "error"}') is None
    assert identify_nul_reply(b"\0") is None
