"""Naming what answers on the addon port when it is not this project's addon.

Sans-I/O: the link hands over what it received (and whether the peer closed), and
gets back a description of the peer and what to do, or None if it cannot tell.
"""

from __future__ import annotations

import json
import struct

BLENDER_MCP_BARE = "the blender-mcp addon (bare JSON framing)"
BLENDER_MCP_LENGTH = "the blender-mcp addon (length-prefixed framing)"
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
        "stop that server (in blender-mcp: the sidebar's 'Disconnect') and start this "
        "project's addon there (run: blender-session blender), or run this project's addon "
        "on another port and point the daemon at it (--addon-port)"
    )
