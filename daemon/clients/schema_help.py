"""`blender-session cmd --help`'s list of scene commands, made from the daemon's own
schemas (daemon/protocol/commands.py), so it cannot drift from what is accepted."""

from __future__ import annotations

import msgspec
import msgspec.inspect as mi

from ..protocol.commands import COMMANDS, READ_ONLY_COMMANDS


def type_text(info: mi.Type) -> str:
    """A param's type as a person reads it."""
    match info:
        case mi.StrType():
            return "text"
        case mi.BoolType():
            return "true|false"
        case mi.IntType():
            low, high = info.ge, info.le
            return f"int {low}..{high}" if low is not None and high is not None else "int"
        case mi.FloatType():
            return "number"
        case mi.LiteralType():
            return "|".join(str(value) for value in info.values)
        case mi.NoneType():
            return "null"
        case mi.ListType():
            return f"[{type_text(info.item_type)}, ...]"
        case mi.TupleType():
            return "[" + ", ".join(type_text(item) for item in info.item_types) + "]"
        case mi.DictType():
            return f"{{text: {type_text(info.value_type)}}}"
        case mi.UnionType():
            return " or ".join(type_text(item) for item in info.types)
        case mi.StructType():
            return "{" + ", ".join(field.name for field in info.fields) + "}"
    return "JSON"


def _default(value: object) -> str:
    if value is None or value is msgspec.NODEFAULT or value in ("", []):
        return ""
    return f" (default {str(value).lower() if isinstance(value, bool) else value})"


def commands_help() -> str:
    lines = ["scene commands (params marked * are required):"]
    for name, spec in COMMANDS.items():
        info = mi.type_info(spec.params)
        assert isinstance(info, mi.StructType)
        kind = "reads" if name in READ_ONLY_COMMANDS else "changes the scene"
        lines.append(f"  {name}  ({kind})")
        for field in info.fields:
            mark = "*" if field.required else " "
            lines.append(
                f"    {mark}{field.name}: {type_text(field.type)}{_default(field.default)}"
            )
    return "\n".join(lines)
