"""The scene commands, once: each one's params schema and how the daemon treats it.
`check_command` validates a command at the daemon's edge, before it costs Blender
anything and before it is journaled."""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec
import msgspec.inspect as mi

from blender_addon.blender_mcp import is_observation_script

from .errors import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from .json_checks import check_json
from .limits import MAX_JSON_INT, MIN_JSON_INT
from .messages import NoParams, Params
from .scene import (
    ApplyStateParams,
    CreateObjectParams,
    ExecuteCodeParams,
    ListSceneItemsParams,
    ObjectNameParams,
    OpenBlendParams,
    RenameObjectParams,
    RenderThumbnailParams,
    SaveBlendParams,
    SelectObjectsParams,
    SetMaterialParams,
    TransformObjectParams,
    ViewportScreenshotParams,
)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    params: type[Params]
    # Changes the scene (else it only reads it); the addon lists the others as read-only.
    changes_scene: bool
    # Its effect on the scene is not in its result: the daemon reads the scene back
    # after it, and a replay cannot redo it exactly.
    opaque: bool = False


COMMANDS: dict[str, CommandSpec] = {
    "get_scene_info": CommandSpec(NoParams, changes_scene=False),
    "get_object_info": CommandSpec(ObjectNameParams, changes_scene=False),
    "get_state": CommandSpec(NoParams, changes_scene=False),
    "create_object": CommandSpec(CreateObjectParams, changes_scene=True),
    "delete_object": CommandSpec(ObjectNameParams, changes_scene=True),
    "transform_object": CommandSpec(TransformObjectParams, changes_scene=True),
    "rename_object": CommandSpec(RenameObjectParams, changes_scene=True),
    "select_objects": CommandSpec(SelectObjectsParams, changes_scene=True),
    "set_material": CommandSpec(SetMaterialParams, changes_scene=True),
    "apply_state": CommandSpec(ApplyStateParams, changes_scene=True, opaque=True),
    "save_blend": CommandSpec(SaveBlendParams, changes_scene=False),
    "open_blend": CommandSpec(OpenBlendParams, changes_scene=True, opaque=True),
    "render_thumbnail": CommandSpec(RenderThumbnailParams, changes_scene=False),
    "execute_code": CommandSpec(ExecuteCodeParams, changes_scene=True, opaque=True),
    # blender-mcp's own (its `look` image, its name search), for its clients.
    "get_viewport_screenshot": CommandSpec(ViewportScreenshotParams, changes_scene=False),
    "list_scene_items": CommandSpec(ListSceneItemsParams, changes_scene=False),
}
COMMAND_NAMES = frozenset(COMMANDS)
OPAQUE_COMMANDS = frozenset(name for name, spec in COMMANDS.items() if spec.opaque)
READ_ONLY_COMMANDS = frozenset(name for name, spec in COMMANDS.items() if not spec.changes_scene)
# Requests of the link itself, answered on the addon's I/O thread; never scene commands.
LINK_ONLY_TYPES = frozenset({"hello", "ping", "attach_session", "subscribe", "daemon_endpoint"})

_param_decoders = {name: msgspec.json.Decoder(spec.params) for name, spec in COMMANDS.items()}
_code_decoder = msgspec.json.Decoder(ExecuteCodeParams)


def is_observation(type: str, params: msgspec.Raw) -> bool:
    """Whether this is one of blender-mcp's read-only observation scripts (by the
    wrapper its server puts around them; the daemon still checks the scene is
    unchanged after it before recording it as an observation)."""
    if type != "execute_code":
        return False
    try:
        code = _code_decoder.decode(params).code
    except DECODE_ERRORS:
        return False
    return is_observation_script(code)


def _bounds_everything(info: mi.Type) -> bool:
    """Whether decoding with this schema already refuses all that `check_json` looks
    for: msgspec refuses bad UTF-8 and lone surrogates by itself and a bounded int is
    in range. Not so an unknown key (its value is kept, unread), an unbounded int, or a
    float (an integer literal of any length decodes into one and is kept as written)."""
    match info:
        case mi.StructType():
            return info.forbid_unknown_fields and all(
                _bounds_everything(field.type) for field in info.fields
            )
        case mi.IntType():
            low = info.ge if info.ge is not None else info.gt
            high = info.le if info.le is not None else info.lt
            return (
                low is not None and high is not None and MIN_JSON_INT <= low <= high <= MAX_JSON_INT
            )
        case mi.ListType() | mi.SetType() | mi.FrozenSetType() | mi.VarTupleType():
            return _bounds_everything(info.item_type)
        case mi.TupleType():
            return all(_bounds_everything(item) for item in info.item_types)
        case mi.DictType():
            return _bounds_everything(info.key_type) and _bounds_everything(info.value_type)
        case mi.UnionType():
            return all(_bounds_everything(item) for item in info.types)
        case mi.StrType() | mi.BoolType() | mi.NoneType() | mi.LiteralType():
            return True
        case _:
            return False


# Commands whose params need no `check_json` after their schema's decode.
_CHECKED_BY_SCHEMA = frozenset(
    name for name, spec in COMMANDS.items() if _bounds_everything(mi.type_info(spec.params))
)
_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<key>[^`]*)`(?: - at `(?P<path>[^`]*)`)?")


def accepted_keys(command: str) -> list[str]:
    return list(COMMANDS[command].params.__struct_fields__)


def check_command(type: str, params: msgspec.Raw, addon_commands: list[str]) -> msgspec.Raw:
    """Validate a scene command and return its params, unchanged, for the journal.

    Raises RemoteProtocolError: `unknown_command` for a type nobody implements,
    `invalid_params` naming the bad key or value (with the keys the command accepts).
    A command the connected addon lists but this daemon has no schema for passes with
    its params checked as plain JSON.
    """
    if type in LINK_ONLY_TYPES:
        raise RemoteProtocolError(
            ErrorCode.UNKNOWN_COMMAND,
            f"{type!r} is part of the daemon's link to Blender, not a scene command",
        )
    decoder = _param_decoders.get(type)
    if decoder is None:
        if type not in addon_commands:
            raise RemoteProtocolError(
                ErrorCode.UNKNOWN_COMMAND,
                f"unknown command {type!r}; known: {', '.join(sorted(COMMANDS))}",
            )
    else:
        try:
            decoder.decode(params)
        except DECODE_ERRORS as error:
            raise _invalid(type, error) from None
        if type in _CHECKED_BY_SCHEMA:
            return params
    check_json(params, f"params of {type!r}")
    return params


def _invalid(type: str, error: Exception) -> RemoteProtocolError:
    text = str(error)
    unknown = _UNKNOWN_FIELD.search(text)
    if unknown is not None and unknown.group("path") in (None, "$"):
        text = (
            f"unknown param {unknown.group('key')!r}; {type!r} accepts "
            f"{', '.join(accepted_keys(type)) or 'no params'}"
        )
    elif isinstance(error, RecursionError):
        text = "nested too deeply"
    return RemoteProtocolError(
        ErrorCode.INVALID_PARAMS, f"params of {type!r} are not valid: {text}"
    )
