"""Naming what answers on the addon port when it is not this project's addon.

Sans-I/O: the link hands over what it received (and whether the peer closed), and
gets back a description of the peer and what to do, or None if it cannot tell.
"""

from __future__ import annotations

import json
import struct

BLENDER_MCP_BARE = "the blender-mcp addon (bare JSON framing)"
BLENDER_MCP_LENGTH = "the blender-mcp addon (length-prefixed framing)"
BLENDER_LAB_MCP = "the Blender Lab MCP addon (NUL-terminated replies, one request per connection)"
CLOSES_EACH_REQUEST = "a server that closes the connection after each request"
SILENT = "a server that accepts connections but never answers"
OTHER_PROTOCOL = "a server that speaks another protocol"

# A request that every blender-mcp release answers, framed the newer way.
LENGTH_PREFIXED_PROBE_BODY = b'{"type": "get_scene_info", "params": {}}'
LENGTH_PREFIXED_PROBE = (
    struct.pack(">I", len(LENGTH_PREFIXED_PROBE_BODY)) + LENGTH_PREFIXED_PROBE_BODY
)


def _blender_mcp_shaped(value: object) -> bool:
    return (
        isinstance(value, dict)
        and value.get("status") in ("success", "error")
        and ("result" in value or "message" in value)
    )


def identify_text_reply(received: bytes) -> str | None:
    """A reply to our NDJSON hello that is one JSON object with no newline, shaped like
    blender-mcp's `{"status": ..., "message": ...}`: the blender-mcp addon."""
    if b"\n" in received.strip():
        return None
    try:
        value = json.loads(received)
    except ValueError:
        return None
    return BLENDER_MCP_BARE if _blender_mcp_shaped(value) else None


def identify_nul_reply(received: bytes) -> str | None:
    """A JSON object ended by a NUL byte (how the official Blender Lab MCP addon
    frames its replies; to our hello it answers an error such as "Client timed out",
    having waited for a NUL-terminated request): that addon."""
    body = received.strip(b" \t\r\n")
    if not body.endswith(b"\0"):
        return None
    try:
        value = json.loads(body[:-1])
    except ValueError:
        return None
    return BLENDER_LAB_MCP if isinstance(value, dict) else None


def identify_unterminated(received: bytes) -> str | None:
    """What sent a reply to our hello that is no NDJSON line, if it can be named."""
    return identify_text_reply(received) or identify_nul_reply(received)


def identify_length_reply(received: bytes) -> str | None:
    """A reply to LENGTH_PREFIXED_PROBE in the same framing: the newer blender-mcp."""
    if len(received) < 4:
        return None
    (size,) = struct.unpack(">I", received[:4])
    body = received[4 : 4 + size]
    if len(body) < size:
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return BLENDER_MCP_LENGTH if _blender_mcp_shaped(value) else None


def advice(found: str, endpoint: str) -> str:
    return (
        f"found {found} on {endpoint}, not the blender-scene-sessions addon; "
        "stop that server (in blender-mcp: the sidebar's 'Disconnect'; for the Blender Lab "
        "addon: its own stop button or disable it) and start this "
        "project's addon there (run: blender-session blender), or run this project's addon "
        "on another port and point the daemon at it (--addon-port)"
    )
