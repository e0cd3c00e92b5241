"""Checking a scene command's params before anything touches bpy: on the I/O thread,
so a bad request never costs Blender's main thread, and never reaches a bpy call that
would fail half way (or take Blender down). Every refusal is `invalid_params` naming
the key, the bad value and what is accepted.

`check(command, params)` returns the params with their defaults filled in; handlers
in commands.py then trust them.

Standard library only; no bpy in this module.
"""

from __future__ import annotations

import math
import os

from .vocabulary import (
    COMMAND_PARAMS,
    LIGHT_TYPES,
    MAX_CODE_CHARS,
    MAX_COORDINATE,
    MAX_FRAME,
    MAX_OBJECT_NAME_CHARS,
    MAX_PATH_CHARS,
    MIN_FRAME,
    OBJECT_KINDS,
    JSONObject,
)


class ParamsError(Exception):
    """Params a command cannot take: `invalid_params` with this message."""


def check(command: str, params: JSONObject) -> JSONObject:
    """The params of `command`, checked, with defaults. Raises ParamsError."""
    required, optional = COMMAND_PARAMS[command]
    accepted = (*required, *optional)
    for key in params:
        if key not in accepted:
            raise ParamsError(
                f"unknown param {_shown(key)} for {command!r}; it accepts "
                f"{', '.join(accepted) or 'no params'}"
            )
    for key in required:
        if params.get(key) is None:
            raise ParamsError(f"{command!r} needs {key!r}")
    checker = _CHECKERS.get(command)
    return checker(params) if checker is not None else dict(params)


# --- values -----------------------------------------------------------------------------


def text(value: object, key: str, *, max_chars: int) -> str:
    """A string that can be encoded (no lone surrogates), without NUL."""
    if not isinstance(value, str):
        raise ParamsError(f"{key!r} must be a string, got {_shown(value)}")
    if len(value) > max_chars:
        raise ParamsError(f"{key!r} is {len(value)} characters; the limit is {max_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ParamsError(f"{key!r} holds an unpaired surrogate: {_shown(value)}") from None
    if "\x00" in value:
        raise ParamsError(f"{key!r} holds a NUL character")
    return value


def name(value: object, key: str) -> str:
    checked = text(value, key, max_chars=MAX_OBJECT_NAME_CHARS)
    if not checked:
        raise ParamsError(f"{key!r} must be a name of 1-{MAX_OBJECT_NAME_CHARS} characters")
    return checked


def optional_name(value: object, key: str) -> str | None:
    return None if value is None else name(value, key)


def names(value: object, key: str) -> list[str]:
    if not isinstance(value, list):
        raise ParamsError(f"{key!r} must be a list of names, got {_shown(value)}")
    return [name(item, f"{key}[{index}]") for index, item in enumerate(value)]


def number(value: object, key: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"{key!r} must be a number, got {_shown(value)}")
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if not math.isfinite(as_float) or not low <= as_float <= high:
        raise ParamsError(f"{key!r} must be a finite number in {low:g}..{high:g}")
    return as_float


def vector(value: object, key: str, size: int = 3, *, low: float = -MAX_COORDINATE,
           high: float = MAX_COORDINATE) -> list[float] | None:  # fmt: skip
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != size:
        raise ParamsError(f"{key!r} must be {size} numbers, got {_shown(value)}")
    return [number(item, f"{key}[{index}]", low=low, high=high) for index, item in enumerate(value)]


def color(value: object, key: str) -> list[float] | None:
    return vector(value, key, 4, low=0.0, high=1.0)


def flag(value: object, key: str, default: bool = False) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ParamsError(f"{key!r} must be true or false, got {_shown(value)}")
    return value


def integer(value: object, key: str, *, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParamsError(f"{key!r} must be an integer in {low}..{high}, got {_shown(value)}")
    return value


def blend_path(value: object, key: str = "path") -> str:
    path = text(value, key, max_chars=MAX_PATH_CHARS)
    if not os.path.isabs(path) or not path.endswith(".blend"):
        raise ParamsError(f"{key!r} must be an absolute path ending in .blend, got {_shown(path)}")
    return path


def _shown(value: object) -> str:
    """A value for an error message: short, and safe to send back as JSON."""
    shown = repr(value)
    shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")
    return shown if len(shown) <= 80 else shown[:77] + "..."


# --- commands ---------------------------------------------------------------------------


def _object_name(params: JSONObject) -> JSONObject:
    return {"name": name(params["name"], "name")}


def _transform(params: JSONObject) -> JSONObject:
    return {
        "location": vector(params.get("location"), "location"),
        "rotation": vector(params.get("rotation"), "rotation"),
        "scale": vector(params.get("scale"), "scale"),
    }


def _parenting(params: JSONObject) -> JSONObject:
    """`parent`: a name, or null for none; absent: left as it is. `set_parent` says
    whether it was given."""
    return {
        "set_parent": "parent" in params,
        "parent": optional_name(params.get("parent"), "parent"),
        "keep_transform": flag(params.get("keep_transform"), "keep_transform", default=True),
    }


def _create_object(params: JSONObject) -> JSONObject:
    kind = params["kind"]
    if kind not in OBJECT_KINDS:
        raise ParamsError(f"'kind' must be one of {', '.join(OBJECT_KINDS)}, got {_shown(kind)}")
    return {
        "kind": kind,
        "name": optional_name(params.get("name"), "name"),
        **_transform(params),
        **_parenting(params),
    }


def _transform_object(params: JSONObject) -> JSONObject:
    return {**_object_name(params), **_transform(params), **_parenting(params)}


def _rename_object(params: JSONObject) -> JSONObject:
    return {**_object_name(params), "new_name": name(params["new_name"], "new_name")}


def _select_objects(params: JSONObject) -> JSONObject:
    return {
        "names": names(params["names"], "names"),
        "active": optional_name(params.get("active"), "active"),
        "extend": flag(params.get("extend"), "extend"),
    }


def _set_material(params: JSONObject) -> JSONObject:
    return {
        "object": name(params["object"], "object"),
        "material": name(params["material"], "material"),
        "color": color(params.get("color"), "color"),
    }


def _record(value: object, index: int) -> JSONObject:
    """One object record inside apply_state (as get_state returns it; additive keys
    of a newer get_state are ignored)."""
    where = f"objects[{index}]"
    if not isinstance(value, dict):
        raise ParamsError(f"{where!r} must be an object record, got {_shown(value)}")
    kind = value.get("data_kind")
    if kind is not None and not isinstance(kind, str):
        raise ParamsError(f"'{where}.data_kind' must be a string or null")
    light_type = value.get("light_type")
    if light_type is not None and light_type not in LIGHT_TYPES:
        raise ParamsError(f"'{where}.light_type' must be one of {', '.join(LIGHT_TYPES)}")
    materials = value.get("materials") or []
    return {
        "name": name(value.get("name"), f"{where}.name"),
        "type": text(value.get("type"), f"{where}.type", max_chars=32),
        "location": vector(value.get("location"), f"{where}.location") or [0.0, 0.0, 0.0],
        "rotation": vector(value.get("rotation"), f"{where}.rotation") or [0.0, 0.0, 0.0],
        "scale": vector(value.get("scale"), f"{where}.scale") or [1.0, 1.0, 1.0],
        "parent": optional_name(value.get("parent"), f"{where}.parent"),
        "materials": names(materials, f"{where}.materials"),
        "visible": flag(value.get("visible"), f"{where}.visible", default=True),
        "data_kind": kind,
        "light_type": light_type,
    }


def _apply_state(params: JSONObject) -> JSONObject:
    objects = params.get("objects") or []
    if not isinstance(objects, list):
        raise ParamsError(f"'objects' must be a list of object records, got {_shown(objects)}")
    records = [_record(item, index) for index, item in enumerate(objects)]
    by_name: dict[str, JSONObject] = {}
    for record in records:
        if record["name"] in by_name:
            raise ParamsError(f"two object records are named {record['name']!r}")
        by_name[record["name"]] = record
    for record in records:
        _check_parent_chain(record, by_name)
    colors = params.get("material_colors") or {}
    if not isinstance(colors, dict):
        raise ParamsError("'material_colors' must map material names to RGBA colours")
    return {
        "scene": text(params.get("scene") or "", "scene", max_chars=MAX_OBJECT_NAME_CHARS),
        "frame": integer(params.get("frame"), "frame", low=MIN_FRAME, high=MAX_FRAME, default=1),
        "file": text(params.get("file") or "", "file", max_chars=MAX_PATH_CHARS),
        "objects": records,
        "selection": names(params.get("selection") or [], "selection"),
        "active": optional_name(params.get("active"), "active"),
        "material_colors": {
            name(key, "material_colors key"): color(value, f"material_colors[{key!r}]")
            for key, value in colors.items()
        },
        "prune": flag(params.get("prune"), "prune"),
    }


def _check_parent_chain(record: JSONObject, by_name: dict[str, JSONObject]) -> None:
    """No object is its own parent, directly or through the others in the snapshot."""
    seen = {record["name"]}
    parent = record["parent"]
    while parent is not None:
        if parent in seen:
            raise ParamsError(f"object {record['name']!r} is its own parent (through {parent!r})")
        seen.add(parent)
        parent_record = by_name.get(parent)
        parent = parent_record["parent"] if parent_record is not None else None


def _save_blend(params: JSONObject) -> JSONObject:
    return {
        "path": blend_path(params["path"]),
        "copy": flag(params.get("copy"), "copy"),
        "compress": flag(params.get("compress"), "compress"),
    }


def _open_blend(params: JSONObject) -> JSONObject:
    return {"path": blend_path(params["path"])}


def _render_thumbnail(params: JSONObject) -> JSONObject:
    return {
        key: integer(params.get(key), key, low=8, high=2048, default=256)
        for key in ("width", "height")
    }


def _execute_code(params: JSONObject) -> JSONObject:
    return {"code": text(params["code"], "code", max_chars=MAX_CODE_CHARS)}


def _viewport_screenshot(params: JSONObject) -> JSONObject:
    path = text(params["filepath"], "filepath", max_chars=MAX_PATH_CHARS)
    if not os.path.isabs(path):
        raise ParamsError(f"'filepath' must be an absolute path, got {_shown(path)}")
    image_format = params.get("format", "png")
    if not isinstance(image_format, str) or image_format.lower() != "png":
        raise ParamsError(f"'format' must be \"png\", got {_shown(image_format)}")
    return {
        "filepath": path,
        "max_size": integer(params.get("max_size"), "max_size", low=16, high=4096, default=800),
        "format": "png",
    }


def _list_scene_items(params: JSONObject) -> JSONObject:
    query = params.get("query")
    return {
        "query": "" if query is None else text(query, "query", max_chars=MAX_OBJECT_NAME_CHARS),
        "limit": integer(params.get("limit"), "limit", low=1, high=100, default=30),
    }


_CHECKERS = {
    "get_object_info": _object_name,
    "create_object": _create_object,
    "delete_object": _object_name,
    "transform_object": _transform_object,
    "rename_object": _rename_object,
    "select_objects": _select_objects,
    "set_material": _set_material,
    "apply_state": _apply_state,
    "save_blend": _save_blend,
    "open_blend": _open_blend,
    "render_thumbnail": _render_thumbnail,
    "execute_code": _execute_code,
    "get_viewport_screenshot": _viewport_screenshot,
    "list_scene_items": _list_scene_items,
}
