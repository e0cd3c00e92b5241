"""`blender-session mcp` as a subprocess, driven by the MCP SDK's own stdio client,
against the real daemon and a real headless Blender."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import trio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import Implementation

from .programs import BIN, Programs

pytestmark = pytest.mark.blender
MCP_TIMEOUT_S = 120


def structured(result: Any) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if set(content) == {"result"} else content
    return json.loads(result.content[0].text)


async def test_mcp_client_drives_blender_and_the_session_is_saved(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    server = StdioServerParameters(
        command=str(BIN / "blender-session"),
        args=["--data-dir", str(programs.data_dir), "mcp"],
        env=programs.env,
    )
    with trio.fail_after(MCP_TIMEOUT_S):
        async with (
            stdio_client(server) as (read, write),
            ClientSession(
                read, write, client_info=Implementation(name="test-agent", version="1")
            ) as session,
        ):
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            assert {
                "create_object",
                "transform_object",
                "get_state",
                "get_thumbnail",
                "session_list",
                "session_restore",
                "session_adopt",
                "session_set_data",
                "checkpoint",
                "timeline",
                "diff",
                "rewind",
                "undo",
            } <= set(tools)
            assert "undo your last 3 steps" in (tools["undo"].description or "")
            assert "execute_code" not in tools  # the addon does not allow it
            kinds = tools["create_object"].input_schema["properties"]["kind"]
            assert "torus" in json.dumps(kinds)
            created = structured(
                await session.call_tool(
                    "create_object", {"kind": "torus", "name": "Ring", "location": [0, 0, 1]}
                )
            )
            assert created["name"] == "Ring" and created["data_kind"] == "torus"
            moved = structured(
                await session.call_tool("transform_object", {"name": "Ring", "scale": [2, 2, 2]})
            )
            assert moved["scale"] == [2.0, 2.0, 2.0]
            refused = await session.call_tool("delete_object", {"name": "Nope"})
            assert refused.is_error and "not_found" in refused.content[0].text
            lone = await session.call_tool(
                "session_adopt", {"session": "scene-20260101-000000-00000001"}
            )  # this daemon has no shared store: nothing to adopt from
            assert lone.is_error and "needs a shared store" in lone.content[0].text
            picture = await session.call_tool("get_thumbnail", {"width": 64, "height": 48})
            image = picture.content[0]
            assert image.type == "image" and image.mime_type == "image/png"
            assert base64.b64decode(image.data).startswith(b"\x89PNG")
            structured(
                await session.call_tool(
                    "session_set_data", {"key": "brief", "value": {"goal": "a ring"}}
                )
            )
            # Time travel: an agent undoes its last step and sees it in the timeline.
            structured(await session.call_tool("create_object", {"kind": "cube", "name": "Oops"}))
            undone = structured(await session.call_tool("undo", {"steps": 1}))
            assert undone["exact"]
            state = structured(await session.call_tool("get_state", {}))
            assert "Oops" not in [o["name"] for o in state["objects"]]
            changed = structured(
                await session.call_tool("diff", {"from_seq": 0, "to_seq": undone["seq"]})
            )
            assert [o["name"] for o in changed["added"]] == ["Ring"]
            steps = structured(await session.call_tool("timeline", {}))
            kinds = [e["kind"] for e in steps["entries"] if e["kind"] != "checkpoint"]
            assert kinds[-2:] == ["rewind", "command"]  # the undo, then get_state
            listed = structured(await session.call_tool("session_list", {}))
            (open_session,) = [s for s in listed["sessions"] if s["status"] == "open"]
            assert open_session["name"].startswith("test-agent ")
    # The client went away (stdio_client waits for the server to exit): the MCP server
    # closed and saved its session on the way out.
    record_path = programs.data_dir / "sessions" / f"{open_session['session_id']}.json"
    data = json.loads(record_path.read_text())["data"]
    assert [c["type"] for c in data["commands"]] == [
        "create_object",
        "transform_object",
        "delete_object",
        "render_thumbnail",
        "create_object",
        "get_state",
    ]
    assert [c["status"] for c in data["commands"]] == ["success"] * 2 + ["error"] + ["success"] * 3
    assert "Ring" in data["state"]["objects"] and data["data"] == {"brief": {"goal": "a ring"}}


async def test_mcp_client_joins_an_open_session_and_leaves_it_open(programs: Programs) -> None:
    programs.start_blender()
    programs.start_daemon()
    programs.wait_connected()
    session_id = programs.json("open", "--name", "mine")["session_id"]
    server = StdioServerParameters(
        command=str(BIN / "blender-session"),
        args=["--data-dir", str(programs.data_dir), "mcp"],
        env=programs.env,
    )
    with trio.fail_after(MCP_TIMEOUT_S):
        async with (
            stdio_client(server) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            structured(await session.call_tool("create_object", {"kind": "cube", "name": "Joined"}))
    (still_open,) = programs.json("status")["open_sessions"]
    assert still_open["session_id"] == session_id and still_open["command_count"] == 1
