"""The addon's copy of the shared vocabulary: command names and their params, object
kinds, error codes and limits. The daemon defines them in `daemon/protocol/`
(commands.py, scene.py, errors.py, limits.py); this addon runs inside Blender with
the standard library only, so it repeats them, and tests/test_vocabulary.py fails when
the two sides differ.

Standard library only; no bpy in this module.
"""

from __future__ import annotations

from typing import Any, Literal

# A JSON object as the stdlib json module gives it: requests, params, replies.
JSONObject = dict[str, Any]

MESH_KINDS = ("cube", "uv_sphere", "ico_sphere", "cylinder", "cone", "plane", "torus", "monkey")
OBJECT_KINDS = (*MESH_KINDS, "empty", "camera", "light")
LIGHT_TYPES: tuple[Literal["POINT", "SUN", "SPOT", "AREA"], ...] = ("POINT", "SUN", "SPOT", "AREA")

# PROTOCOL.md §1's error codes: every error this addon answers carries one of them.
ERROR_CODES = frozenset(
    {
        "bad_request",
        "unknown_command",
        "not_found",
        "invalid_params",
        "forbidden",
        "busy_timeout",
        "internal",
    }
)

# Requests answered on the I/O thread, never queued for the main thread.
IO_TYPES = frozenset({"hello", "ping", "attach_session", "subscribe", "daemon_endpoint"})

# Each scene command's params: (required keys, optional keys). Any other key is
# refused with invalid_params naming it and these.
COMMAND_PARAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "get_scene_info": ((), ()),
    "get_object_info": (("name",), ()),
    "get_state": ((), ()),
    "create_object": (
        ("kind",),
        ("name", "location", "rotation", "scale", "parent", "keep_transform"),
    ),
    "delete_object": (("name",), ()),
    "transform_object": (
        ("name",),
        ("location", "rotation", "scale", "parent", "keep_transform"),
    ),
    "rename_object": (("name", "new_name"), ()),
    "select_objects": (("names",), ("active", "extend")),
    "set_material": (("object", "material"), ("color",)),
    "apply_state": (
        (),
        ("scene", "frame", "file", "objects", "selection", "active", "material_colors", "prune"),
    ),
    "save_blend": (("path",), ("copy", "compress")),
    "open_blend": (("path",), ()),
    "render_thumbnail": ((), ("width", "height")),
    "execute_code": (("code",), ()),
    # blender-mcp's own commands, in its shapes (blender_mcp.py says what we claim).
    "get_viewport_screenshot": (("filepath",), ("max_size", "format")),
    "list_scene_items": ((), ("query", "limit")),
}
COMMAND_NAMES = frozenset(COMMAND_PARAMS)
# Commands that only read the scene: no scene_changed event follows them.
READ_ONLY_COMMANDS = frozenset(
    {
        "get_scene_info",
        "get_object_info",
        "get_state",
        "render_thumbnail",
        "save_blend",
        "get_viewport_screenshot",
        "list_scene_items",
    }
)

# Session ids the daemon attaches (its store/ids.py makes them).
SESSION_ID_PATTERN = r"^scene-[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$"

# Limits (the daemon's protocol/limits.py gives the reason for each value).
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_OBJECT_NAME_CHARS = 63
MAX_COORDINATE = 1e30
MIN_FRAME = -1_048_574
MAX_FRAME = 1_048_574
MAX_SESSION_NAME_CHARS = 200
MAX_CODE_CHARS = 1_000_000
MAX_PATH_CHARS = 4096
