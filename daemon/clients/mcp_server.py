"""`blender-session mcp`: an MCP server on stdio, over the daemon.

An MCP client (an AI agent) gets Blender's scene commands as tools, each one recorded
in a session: the first tool call opens a session named after the client, and the
session is closed and saved when the client goes away. Built on the official MCP
SDK, running on trio through anyio.
"""

from __future__ import annotations

import base64
import contextlib
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from pydantic import Field, JsonValue

from .. import __version__
from ..protocol.ops import StatusResult
from .aclient import AsyncControlClient
from .client import ClientError, find_endpoint

Vec3 = Annotated[tuple[float, float, float] | None, Field(description="x, y, z")]
ObjectName = Annotated[str, Field(min_length=1, max_length=63, description="object name")]
Kind = Literal["cube", "uv_sphere", "ico_sphere", "cylinder", "cone", "plane", "torus",
               "monkey", "empty", "camera", "light"]  # fmt: skip

INSTRUCTIONS = (
    "Drive a Blender scene. Every scene tool is recorded in a session that is saved when "
    "you disconnect; session_list / session_restore bring earlier scenes back. Start with "
    "get_scene_info; use get_thumbnail to see the scene."
)


class SessionBridge:
    """Holds the daemon connection and the session this MCP client works in."""

    def __init__(self, client: AsyncControlClient) -> None:
        self.client = client
        self.session_id: str | None = None
        self.opened_here = False

    async def call(self, op: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """An op's result (every op's result is a JSON object), or a ToolError."""
        try:
            return _object(await self.client.result(op, params or {}))
        except ClientError as error:
            raise ToolError(f"{error.code}: {error.message}") from None

    async def current_session(self, ctx: Context) -> str:
        """The session tools record into: on first use, the newest open session if
        there is one (left open at the end), else a new one named after the client
        (closed and saved when the client goes away)."""
        if self.session_id is None:
            open_sessions = (await self.call("status"))["open_sessions"]
            if open_sessions:
                self.session_id = open_sessions[-1]["session_id"]
                return self.session_id
            client_info = getattr(ctx.session.client_params, "client_info", None)
            client = getattr(client_info, "name", None) or "mcp-client"
            name = f"{client} {time.strftime('%Y-%m-%d %H:%M:%S')}"
            opened = await self.call("session.open", {"name": name})
            self.session_id, self.opened_here = opened["session_id"], True
        return self.session_id

    async def command(self, ctx: Context, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """A scene command's result (every scene command's result is a JSON object)."""
        session_id = await self.current_session(ctx)
        sent = {key: value for key, value in params.items() if value is not None}
        done = await self.call(
            "session.command", {"session_id": session_id, "type": kind, "params": sent}
        )
        return _object(done["result"])

    async def close(self) -> None:
        if self.session_id is not None and self.opened_here:
            # Shielded and bounded: the client is gone, but its work must still be saved.
            # A session closed elsewhere (ClientError) has nothing left to save.
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(30),
                contextlib.suppress(ClientError),
            ):
                await self.client.result("session.close", {"session_id": self.session_id})
            self.session_id = None


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ToolError(f"the daemon answered with {type(value).__name__}, not an object")
    return value


def build_server(bridge: SessionBridge, *, offer_execute_code: bool) -> MCPServer:
    server = MCPServer("blender-scene-sessions", instructions=INSTRUCTIONS, version=__version__)
    tool = server.tool

    @tool(description="The scene: name, frame, objects (name, type, location), selection.")
    async def get_scene_info(ctx: Context) -> dict[str, Any]:
        return await bridge.command(ctx, "get_scene_info", {})

    @tool(description="One object's record: transform, parent, materials, mesh stats.")
    async def get_object_info(name: ObjectName, ctx: Context) -> dict[str, Any]:
        return await bridge.command(ctx, "get_object_info", {"name": name})

    @tool(description="A full snapshot of the scene: every object's record, selection, active.")
    async def get_state(ctx: Context) -> dict[str, Any]:
        return await bridge.command(ctx, "get_state", {})

    @tool(description="Make an object (a primitive mesh, an empty, a camera or a light).")
    async def create_object(
        kind: Kind,
        ctx: Context,
        name: str | None = None,
        location: Vec3 = None,
        rotation: Annotated[tuple[float, float, float] | None, Field(description="radians")] = None,
        scale: Vec3 = None,
    ) -> dict[str, Any]:
        params = {
            "kind": kind,
            "name": name,
            "location": location,
            "rotation": rotation,
            "scale": scale,
        }
        return await bridge.command(ctx, "create_object", params)

    @tool(description="Delete an object by name.")
    async def delete_object(name: ObjectName, ctx: Context) -> dict[str, Any]:
        return await bridge.command(ctx, "delete_object", {"name": name})

    @tool(description="Move, rotate (radians) or scale an object; give only what changes.")
    async def transform_object(
        name: ObjectName,
        ctx: Context,
        location: Vec3 = None,
        rotation: Vec3 = None,
        scale: Vec3 = None,
    ) -> dict[str, Any]:
        params = {"name": name, "location": location, "rotation": rotation, "scale": scale}
        return await bridge.command(ctx, "transform_object", params)

    @tool(description="Rename an object.")
    async def rename_object(name: ObjectName, new_name: ObjectName, ctx: Context) -> dict[str, Any]:
        params = {"name": name, "new_name": new_name}
        return await bridge.command(ctx, "rename_object", params)

    @tool(
        description="Select objects (replacing the selection unless extend) and set the active one."
    )
    async def select_objects(
        names: list[str], ctx: Context, active: str | None = None, extend: bool = False
    ) -> dict[str, Any]:
        params = {"names": names, "active": active, "extend": extend}
        return await bridge.command(ctx, "select_objects", params)

    @tool(
        description="Give an object a material (made if missing), optionally an RGBA colour 0..1."
    )
    async def set_material(
        object: ObjectName,
        material: ObjectName,
        ctx: Context,
        color: Annotated[
            tuple[float, float, float, float] | None, Field(description="RGBA 0..1")
        ] = None,
    ) -> dict[str, Any]:
        params = {"object": object, "material": material, "color": color}
        return await bridge.command(ctx, "set_material", params)

    @tool(description="Make the scene match a get_state snapshot; prune removes other objects.")
    async def apply_state(
        state: dict[str, Any], ctx: Context, prune: bool = False
    ) -> dict[str, Any]:
        return await bridge.command(ctx, "apply_state", {**state, "prune": prune})

    @tool(description="Save the scene as a .blend file (absolute path).")
    async def save_blend(path: str, ctx: Context) -> dict[str, Any]:
        return await bridge.command(ctx, "save_blend", {"path": path})

    @tool(description="Open a .blend file (absolute path), replacing the scene.")
    async def open_blend(path: str, ctx: Context) -> dict[str, Any]:
        return await bridge.command(ctx, "open_blend", {"path": path})

    @tool(description="A small PNG picture of the scene, to see what it looks like.")
    async def get_thumbnail(
        ctx: Context,
        width: Annotated[int, Field(ge=8, le=1024)] = 256,
        height: Annotated[int, Field(ge=8, le=1024)] = 256,
    ) -> Image:
        result = await bridge.command(ctx, "render_thumbnail", {"width": width, "height": height})
        return Image(data=base64.b64decode(result["png_base64"]), format="png")

    if offer_execute_code:

        @tool(description="Run Python in Blender (bpy is imported); returns what it printed.")
        async def execute_code(code: str, ctx: Context) -> dict[str, Any]:
            return await bridge.command(ctx, "execute_code", {"code": code})

    @tool(description="Start a new session (the current one stays open until closed).")
    async def session_open(ctx: Context, name: str | None = None) -> dict[str, Any]:
        opened = await bridge.call("session.open", {"name": name} if name else {})
        bridge.session_id, bridge.opened_here = opened["session_id"], True
        return opened

    @tool(description="Close the current session: final snapshot, saved to disk.")
    async def session_close(ctx: Context) -> dict[str, Any]:
        session_id = await bridge.current_session(ctx)
        closed = await bridge.call("session.close", {"session_id": session_id})
        bridge.session_id = None
        return closed

    @tool(description="Every session, open and saved, with names, times and command counts.")
    async def session_list(ctx: Context) -> dict[str, Any]:
        return await bridge.call("session.list")

    @tool(description="One session's record, by id or name: its objects and every command.")
    async def session_show(session: str, ctx: Context) -> dict[str, Any]:
        return await bridge.call("session.show", {"session_id": session})

    @tool(description="Bring a saved session's scene back into Blender as a new current session.")
    async def session_restore(
        session: str, ctx: Context, name: str | None = None
    ) -> dict[str, Any]:
        params = {"session_id": session, **({"name": name} if name else {})}
        restored = await bridge.call("session.restore", params)
        bridge.session_id, bridge.opened_here = restored["session_id"], True
        return restored

    @tool(
        description="Take over a session whose daemon stopped (a shared store only): its "
        "scene is brought back into this Blender with every acknowledged command, and it "
        "becomes the current session."
    )
    async def session_adopt(session: str, ctx: Context) -> dict[str, Any]:
        adopted = await bridge.call("session.adopt", {"session_id": session})
        bridge.session_id, bridge.opened_here = adopted["session_id"], True
        return adopted

    @tool(
        description="Save an exact copy of the scene now (a checkpoint), optionally labelled, "
        "so you can rewind to this point later. Returns the step it belongs to."
    )
    async def checkpoint(ctx: Context, label: str | None = None) -> dict[str, Any]:
        session_id = await bridge.current_session(ctx)
        params = {"session_id": session_id, **({"label": label} if label else {})}
        return await bridge.call("session.checkpoint", params)

    @tool(
        description="The current session's history, oldest first: every step with its seq, "
        "kind (command, edit made by a person or another program, checkpoint, rewind, "
        "restart), status and the objects it touched. Use the seqs with rewind and diff; "
        "pass after_seq to read further."
    )
    async def timeline(
        ctx: Context, after_seq: int = 0, limit: int = 200, session: str | None = None
    ) -> dict[str, Any]:
        session_id = session or await bridge.current_session(ctx)
        params = {"session_id": session_id, "after_seq": after_seq, "limit": limit}
        return await bridge.call("session.timeline", params)

    @tool(
        description="What changed in the scene between two steps of the current session "
        "(from_seq, and to_seq or the last step): objects added, removed, renamed, and "
        "changed field by field. Nothing in Blender is touched."
    )
    async def diff(
        from_seq: int, ctx: Context, to_seq: int | None = None, session: str | None = None
    ) -> dict[str, Any]:
        session_id = session or await bridge.current_session(ctx)
        params: dict[str, Any] = {"session_id": session_id, "from_seq": from_seq}
        if to_seq is not None:
            params["to_seq"] = to_seq
        return await bridge.call("session.diff", params)

    @tool(
        description="Make the scene exactly what it was right after step to_seq (see "
        "timeline). Nothing is lost: the rewind is a step of its own and any later step "
        "can be rewound to again."
    )
    async def rewind(to_seq: int, ctx: Context) -> dict[str, Any]:
        session_id = await bridge.current_session(ctx)
        return await bridge.call("session.rewind", {"session_id": session_id, "to_seq": to_seq})

    @tool(
        description="Undo your last N steps that changed the scene (default 1): "
        "'undo your last 3 steps' is steps=3. Reversible with rewind."
    )
    async def undo(ctx: Context, steps: int = 1) -> dict[str, Any]:
        session_id = await bridge.current_session(ctx)
        return await bridge.call("session.undo", {"session_id": session_id, "steps": steps})

    @tool(description="Attach a JSON value to the current session under a key (null removes it).")
    async def session_set_data(key: str, value: JsonValue, ctx: Context) -> dict[str, Any]:
        session_id = await bridge.current_session(ctx)
        params = {"session_id": session_id, "key": key, "value": value}
        return await bridge.call("session.set_data", params)

    return server


async def serve(data_dir: Path, control_port: int | None) -> None:
    host, port, token = find_endpoint(data_dir, control_port)
    client = await AsyncControlClient.connect(port, token, host=host)
    try:
        reply = await client.call("status")
        if not reply.ok:
            assert reply.error is not None
            raise ClientError(reply.error.message, reply.error.code)
        status = msgspec.json.decode(reply.result, type=StatusResult)
        bridge = SessionBridge(client)
        server = build_server(bridge, offer_execute_code=status.blender.execute_code_enabled)
        try:
            await server.run_stdio_async()
        finally:
            await bridge.close()
    finally:
        await client.aclose()


def run(data_dir: Path, control_port: int | None) -> None:
    anyio.run(serve, data_dir, control_port, backend="trio")
