"""Checking a scene command at the daemon's edge, before it costs Blender anything."""

from __future__ import annotations

import msgspec

from .errors import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from .messages import COMMAND_PARAMS, LINK_ONLY_TYPES

_param_decoders = {type: msgspec.json.Decoder(schema) for type, schema in COMMAND_PARAMS.items()}


def check_command(type: str, params: msgspec.Raw, addon_commands: list[str]) -> msgspec.Raw:
    """Validate a scene command at the daemon's edge, before it costs Blender anything."""
    if type in LINK_ONLY_TYPES:
        raise RemoteProtocolError(
            ErrorCode.UNKNOWN_COMMAND,
            f"{type!r} is part of the daemon's link to Blender, not a scene command",
        )
    decoder = _param_decoders.get(type)
    if decoder is None:
        if type in addon_commands:
            return params  # the addon knows a command this daemon has no schema for
        raise RemoteProtocolError(
            ErrorCode.UNKNOWN_COMMAND,
            f"unknown command {type!r}; known: {', '.join(sorted(COMMAND_PARAMS))}",
        )
    try:
        decoder.decode(params)
    except DECODE_ERRORS as error:
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS, f"params of {type!r} are not valid: {error}"
        ) from None
    return params
