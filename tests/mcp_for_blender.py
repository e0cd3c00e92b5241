"""Driving the real `mcp-for-blender` MCP server (blender-mcp's successor on PyPI) the
way its users' MCP clients do: the server in its own venv (as `uvx mcp-for-blender`
runs it; it needs mcp<2, this project mcp 2.x), spoken to over stdio by this project's
MCP SDK client, with BLENDER_PORT pointed at our addon or at the daemon's proxy.

`./scripts/setup` makes that venv (.venv-mcp-for-blender, the version pinned below).
`tool_outcomes` calls each of its tools once and says what came back; the test and
docs/blender-mcp-clients.md's table are made from it.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from . import blender_procs

MCP_FOR_BLENDER_VERSION = "2.2.4"  # pinned in scripts/setup too
VENV = Path(__file__).resolve().parent.parent / ".venv-mcp-for-blender"
SERVER = VENV / "bin" / "mcp-for-blender"
CALL_TIMEOUT_S = 120


def require_mcp_for_blender() -> None:
    blender_procs.require(
        SERVER.exists(), f"mcp-for-blender {MCP_FOR_BLENDER_VERSION} (./scripts/setup)"
    )


def server_env(home: Path, port: int) -> dict[str, str]:
    """Its settings kept inside `home`, telemetry off, no update checks."""
    env = blender_procs.blender_env(home)
    env.update(
        BLENDER_HOST="127.0.0.1",
        BLENDER_PORT=str(port),
        DISABLE_TELEMETRY="true",
        BLENDERMCP_NO_UPDATE_CHECK="1",
        BLENDERMCP_ADDONS_DIR=str(home / "addons"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        TMPDIR=str(home),
    )
    os.makedirs(home / "addons", exist_ok=True)
    return env


@dataclass
class Outcome:
    ok: bool
    text: str  # what the model would read (the first text block), shortened
    image: bytes | None = None  # the PNG, when an image came back

    def __str__(self) -> str:
        kind = "image" if self.image else ("ok" if self.ok else "error")
        return f"{kind}: {self.text[:160]}"


def _outcome(result: Any) -> Outcome:
    texts = [block.text for block in result.content if block.type == "text"]
    images = [base64.b64decode(b.data) for b in result.content if b.type == "image"]
    text = "\n".join(texts)
    refused = result.is_error or text.startswith(("Error", "Could not", "Couldn't"))
    return Outcome(not refused, text, images[0] if images else None)


# One call of each of its tools (the app-only viewport tools with the look they
# follow), with arguments a user's model would send.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_addon_status", {}),
    ("get_scene_info", {}),
    ("get_scene_info", {"fields": ["location", "size", "materials"], "query": "Cube"}),
    ("look", {"max_size": 300}),
    ("look", {"mode": "angles", "max_size": 300}),
    (
        "execute_blender_code",
        {"code": "import bpy\nprint(sorted(o.name for o in bpy.data.objects))"},
    ),
    ("execute_blender_code", {"code": "import bpy\nbpy.data.objects['Cube'].location.x = 2"}),
    ("search_assets", {"source": "polyhaven", "query": "chair"}),
    ("import_asset", {"source": "polyhaven", "id": "chair_01", "asset_type": "models"}),
    ("generate_3d", {"prompt": "a red chair"}),
    ("disable_telemetry", {}),
    ("record_trajectory_feedback", {"feedback": "accept"}),
    ("viewport_capture", {"max_size": 300}),
    ("viewport_latest", {}),
    ("search_mentions", {"query": "Cu"}),
]


def call_key(name: str, arguments: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={json.dumps(v)[:24]}" for k, v in arguments.items() if k != "code")
    if "code" in arguments:
        shown = "reads" if "print" in arguments["code"] else "changes the scene"
    return f"{name}({shown})"


async def tool_outcomes(
    env: dict[str, str], log: Path, calls: list[tuple[str, dict[str, Any]]] | None = None
) -> dict[str, Outcome]:
    """Run `calls` (every call of CALLS), then read the object resource; the server's
    log goes to `log`. Bounded."""
    outcomes: dict[str, Outcome] = {}
    server = StdioServerParameters(command=str(SERVER), args=[], env=env)
    with trio.fail_after(CALL_TIMEOUT_S), log.open("w") as errlog:
        async with (
            stdio_client(server, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            for name, arguments in CALLS if calls is None else calls:
                outcomes[call_key(name, arguments)] = _outcome(
                    await session.call_tool(name, arguments)
                )
            resource = await session.read_resource("blender://object/Cube")
            text = resource.contents[0].text  # type: ignore[union-attr]
            outcomes["resource blender://object/Cube"] = Outcome('"name"' in text, text)
    return outcomes
