"""The scene commands of PROTOCOL.md §1. The only module (with snapshot.py and the
UI) that touches bpy. Each handler takes the request's params, already checked by
params.py on the I/O thread (types, ranges, unknown keys), and returns a JSON-able
result or raises CommandError.

Every function here runs on: main thread.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import threading
import time
import traceback

import bpy
import mathutils

from . import blender_mcp_commands, render, snapshot
from .server import CommandError
from .vocabulary import COMMAND_NAMES, JSONObject

_settings = {"allow_execute_code": False}


def configure(allow_execute_code: bool) -> None:
    _settings["allow_execute_code"] = bool(allow_execute_code)


class SceneIndex:
    """The active scene's objects by name, for the commands of one drain.

    `bpy.data.objects.get()` and `name in scene.objects` each scan the whole list
    (0.25 ms at 10,000 objects), so a drain that looks up many names builds a dict
    once instead. It lives for one drain only: between drains the user, undo or a file
    load may free objects, and a reference to a freed object must never be touched.
    Within a drain only these commands run; the ones that may free objects drop it.
    """

    LOOKUPS_BEFORE_BUILDING = 4  # a dict costs ~2.5 ms at 10,000 objects

    def __init__(self) -> None:
        self._by_name: dict[str, bpy.types.Object] | None = None
        self._lookups = 0

    def forget(self) -> None:
        self._by_name = None
        self._lookups = 0

    def get(self, name: str) -> bpy.types.Object | None:
        if self._by_name is None:
            self._lookups += 1
            if self._lookups <= self.LOOKUPS_BEFORE_BUILDING:
                obj = bpy.data.objects.get(name)
                return (
                    obj if obj is not None and obj.name in snapshot.active_scene().objects else None
                )
            self._by_name = {obj.name: obj for obj in snapshot.active_scene().objects}
        return self._by_name.get(name)

    def added(self, obj: bpy.types.Object) -> None:
        if self._by_name is not None:
            self._by_name[obj.name] = obj

    def removed(self, name: str) -> None:
        if self._by_name is not None:
            self._by_name.pop(name, None)


scene_index = SceneIndex()


def _object(name: str) -> bpy.types.Object:
    obj = scene_index.get(name)
    if obj is None:
        raise CommandError(
            "not_found",
            f"no object {name!r} in scene "
            f"{snapshot.active_scene().name!r} (run get_scene_info to list them)",
        )
    return obj


# --- commands --------------------------------------------------------------------------


def get_scene_info(params: JSONObject) -> JSONObject:
    scene = snapshot.active_scene()
    objects = list(scene.objects)
    active = snapshot.active_view_layer().objects.active
    return {
        "name": scene.name,
        "object_count": len(objects),
        "objects": [
            {"name": o.name, "type": o.type, "location": list(o.location.to_tuple())}
            for o in objects
        ],
        "materials_count": len(bpy.data.materials),
        "frame": scene.frame_current,
        "selection": [o.name for o in objects if o.select_get()],
        "active": active.name if active is not None else None,
    }


def get_object_info(params: JSONObject) -> JSONObject:
    obj = _object(params["name"])
    record = snapshot.object_record(obj)
    if isinstance(obj.data, bpy.types.Mesh):
        mesh = obj.data
        record["mesh"] = {
            "vertices": len(mesh.vertices),
            "edges": len(mesh.edges),
            "polygons": len(mesh.polygons),
        }
        # matrix_world is only brought up to date when the depsgraph is evaluated, which
        # a headless Blender (no redraws) never does on its own.
        snapshot.active_view_layer().update()
        corners = [obj.matrix_world @ mathutils.Vector(corner) for corner in obj.bound_box]
        record["world_bounding_box"] = [
            [min(c[i] for c in corners) for i in range(3)],
            [max(c[i] for c in corners) for i in range(3)],
        ]
    return record


def get_state(params: JSONObject) -> JSONObject:
    return snapshot.get_state()


def create_object(params: JSONObject) -> JSONObject:
    kind = params["kind"]
    name = params["name"] or kind.replace("_", " ").title().replace(" ", "")
    obj = snapshot.new_object(kind, name)
    scene_index.added(obj)
    snapshot.set_transform(obj, params["location"], params["rotation"], params["scale"])
    if params["parent"] is not None:
        _set_parent(obj, params["parent"], params["keep_transform"])
    return snapshot.object_record(obj, just_linked=True)


def delete_object(params: JSONObject) -> JSONObject:
    obj = _object(params["name"])
    name = obj.name
    scene_index.removed(name)
    snapshot.remove_objects([obj])
    return {"deleted": name}


def transform_object(params: JSONObject) -> JSONObject:
    obj = _object(params["name"])
    snapshot.set_transform(obj, params["location"], params["rotation"], params["scale"])
    if params["set_parent"]:
        _set_parent(obj, params["parent"], params["keep_transform"])
    return snapshot.object_record(obj)


def _set_parent(obj: bpy.types.Object, parent_name: str | None, keep_transform: bool) -> None:
    """Parent `obj` (None: unparent). `keep_transform`: it stays where it is in the
    world (its own location, rotation and scale become relative to the new parent);
    else it keeps those values and moves with the parent. The parent inverse is left
    the identity, so a record's local values and its parent say where it is."""
    parent = None if parent_name is None else _object(parent_name)
    walk = parent
    while walk is not None:
        if walk == obj:
            raise CommandError(
                "invalid_params",
                f"{parent_name!r} cannot be the parent of {obj.name!r}: it is that object "
                "or one of its children",
            )
        walk = walk.parent
    if keep_transform:
        snapshot.active_view_layer().update()  # world matrices are stale headless
        world = obj.matrix_world.copy()
    obj.parent = parent
    obj.matrix_parent_inverse.identity()
    if keep_transform:
        obj.matrix_world = world


def rename_object(params: JSONObject) -> JSONObject:
    obj = _object(params["name"])
    new_name = params["new_name"]
    if new_name != obj.name and bpy.data.objects.get(new_name) is not None:
        raise CommandError("invalid_params", f"an object named {new_name!r} already exists")
    scene_index.removed(obj.name)
    obj.name = new_name
    scene_index.added(obj)
    return snapshot.object_record(obj)


def select_objects(params: JSONObject) -> JSONObject:
    extend = params["extend"]
    active_name = params["active"]
    chosen = [_object(name) for name in params["names"]]
    active = _object(active_name) if active_name else None
    view_layer = snapshot.active_view_layer()
    objects = snapshot.active_scene().objects  # not view_layer.objects: it lags behind removals
    if not extend:
        for obj in objects:
            if obj.select_get():
                obj.select_set(False)
    for obj in chosen:
        obj.select_set(True)
    if active is not None:
        view_layer.objects.active = active
    elif chosen:
        view_layer.objects.active = chosen[-1]
    current = view_layer.objects.active
    return {
        "selection": [o.name for o in objects if o.select_get()],
        "active": current.name if current is not None else None,
    }


def set_material(params: JSONObject) -> JSONObject:
    obj = _object(params["object"])
    snapshot.assign_material(obj, params["material"], params["color"])
    return snapshot.object_record(obj)


def apply_state(params: JSONObject) -> JSONObject:
    return snapshot.apply_state(params, prune=params["prune"])


def save_blend(params: JSONObject) -> JSONObject:
    path, copy = params["path"], params["copy"]
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise CommandError("not_found", f"directory {directory!r} does not exist")
    began = time.perf_counter()
    result = bpy.ops.wm.save_as_mainfile(
        filepath=path, check_existing=False, copy=copy, compress=params["compress"]
    )
    if "FINISHED" not in result:
        raise CommandError("internal", f"Blender did not save {path!r}: {result}")
    duration_ms = round((time.perf_counter() - began) * 1000, 3)
    return {"path": path, "bytes": os.path.getsize(path), "duration_ms": duration_ms}


def open_blend(params: JSONObject) -> JSONObject:
    path = params["path"]
    if not os.path.isfile(path):
        raise CommandError("not_found", f"no file {path!r}")
    try:
        bpy.ops.wm.open_mainfile(filepath=path)
    except RuntimeError as error:
        raise CommandError("invalid_params", f"Blender cannot open {path!r}: {error}") from None
    return {"path": bpy.data.filepath, "bytes": os.path.getsize(path)}


def render_thumbnail(params: JSONObject) -> JSONObject:
    width, height = params["width"], params["height"]
    png = render.render_png(width, height)
    return {"png_base64": base64.b64encode(png).decode(), "width": width, "height": height}


def execute_code(params: JSONObject) -> JSONObject:
    if not _settings["allow_execute_code"]:
        raise CommandError(
            "forbidden",
            "execute_code is off: running Python sent over the "
            "socket is disabled; turn on 'Allow execute_code' in the addon "
            "preferences (or start with --allow-execute-code) if you trust "
            "every local process",
        )
    code = params["code"]
    output = io.StringIO()
    namespace = {"bpy": bpy, "__name__": "__bss_execute__"}
    try:
        with contextlib.redirect_stdout(output):
            exec(compile(code, "<execute_code>", "exec"), namespace)
    except Exception as error:
        raise CommandError(
            "internal", f"code raised {error!r}:\n{traceback.format_exc(limit=-3)}"
        ) from None
    return {"executed": True, "result": output.getvalue()}


COMMANDS = {
    "get_scene_info": get_scene_info,
    "get_object_info": get_object_info,
    "get_state": get_state,
    "create_object": create_object,
    "delete_object": delete_object,
    "transform_object": transform_object,
    "rename_object": rename_object,
    "select_objects": select_objects,
    "set_material": set_material,
    "apply_state": apply_state,
    "save_blend": save_blend,
    "open_blend": open_blend,
    "render_thumbnail": render_thumbnail,
    "execute_code": execute_code,
    "get_viewport_screenshot": blender_mcp_commands.get_viewport_screenshot,
    "list_scene_items": blender_mcp_commands.list_scene_items,
}
assert set(COMMANDS) == COMMAND_NAMES, "vocabulary.COMMAND_PARAMS lists every command"
# Commands after which `scene_index` still holds: they free no object, or keep the
# index up to date themselves.
KEEP_SCENE_INDEX = frozenset(
    {
        "get_scene_info",
        "get_object_info",
        "get_state",
        "create_object",
        "delete_object",
        "transform_object",
        "rename_object",
        "select_objects",
        "set_material",
    }
)


def dispatch(kind: str, params: JSONObject) -> object:
    """Run one command, its params checked by params.check. Runs on: main thread."""
    if threading.current_thread() is not threading.main_thread():
        raise CommandError("internal", "scene commands must run on Blender's main thread")
    handler = COMMANDS.get(kind)
    if handler is None:
        raise CommandError(
            "unknown_command", f"unknown command {kind!r}; known: {', '.join(sorted(COMMANDS))}"
        )
    try:
        return handler(params)
    finally:
        if kind not in KEEP_SCENE_INDEX:  # it may have freed objects (or failed part way)
            scene_index.forget()
