"""Op name -> handler. Each handler decodes its params with the op's Struct and
returns the encoded result; errors are raised as RemoteProtocolError."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from ..protocol import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from ..protocol.ops import (
    CleanupParams,
    CommandParams,
    ExportParams,
    ImportParams,
    NoParams,
    OpenParams,
    RestoreParams,
    SessionRefParams,
    SetDataParams,
)
from ..sessions import SessionManager

_encoder = msgspec.json.Encoder()
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OpContext:
    manager: SessionManager
    client_id: str | None


Handler = Callable[[OpContext, msgspec.Raw], Awaitable[bytes]]


def decode_params(params: msgspec.Raw, schema: type[T], op: str) -> T:
    try:
        return msgspec.json.decode(params, type=schema)
    except DECODE_ERRORS as error:
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS, f"params of {op!r} are not valid: {error}"
        ) from None


async def _status(ctx: OpContext, params: msgspec.Raw) -> bytes:
    decode_params(params, NoParams, "status")
    return _encoder.encode(ctx.manager.status())


async def _open(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, OpenParams, "session.open")
    return _encoder.encode(
        await ctx.manager.open(name=p.name, session_id=p.session_id, blender=p.blender)
    )


async def _command(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, CommandParams, "session.command")
    return _encoder.encode(await ctx.manager.command(p.session_id, p.type, p.params, ctx.client_id))


async def _state(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SessionRefParams, "session.state")
    return _encoder.encode(await ctx.manager.state(p.session_id))


async def _close(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SessionRefParams, "session.close")
    return _encoder.encode(await ctx.manager.close(p.session_id))


async def _list(ctx: OpContext, params: msgspec.Raw) -> bytes:
    decode_params(params, NoParams, "session.list")
    return _encoder.encode(await ctx.manager.list())


async def _show(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SessionRefParams, "session.show")
    return await ctx.manager.show(p.session_id)


async def _delete(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SessionRefParams, "session.delete")
    return _encoder.encode(await ctx.manager.delete(p.session_id))


async def _stats(ctx: OpContext, params: msgspec.Raw) -> bytes:
    decode_params(params, NoParams, "session.stats")
    return _encoder.encode(await ctx.manager.stats())


async def _restore(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, RestoreParams, "session.restore")
    restored = await ctx.manager.restore(p.session_id, p.name, ctx.client_id, p.path, p.blender)
    return _encoder.encode(restored)


async def _export(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, ExportParams, "session.export")
    return _encoder.encode(await ctx.manager.export(p.session_ids, p.all, p.path))


async def _import(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, ImportParams, "session.import")
    return _encoder.encode(await ctx.manager.import_archive(p.path, p.overwrite))


async def _cleanup(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, CleanupParams, "session.cleanup")
    return _encoder.encode(await ctx.manager.cleanup(p.older_than_days, p.keep, p.dry_run))


async def _thumbnail(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SessionRefParams, "session.thumbnail")
    return _encoder.encode(await ctx.manager.thumbnail(p.session_id))


async def _set_data(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SetDataParams, "session.set_data")
    return _encoder.encode(await ctx.manager.set_data(p.session_id, p.key, p.value))


HANDLERS: dict[str, Handler] = {
    "status": _status,
    "session.open": _open,
    "session.command": _command,
    "session.state": _state,
    "session.close": _close,
    "session.list": _list,
    "session.show": _show,
    "session.delete": _delete,
    "session.stats": _stats,
    "session.restore": _restore,
    "session.set_data": _set_data,
    "session.thumbnail": _thumbnail,
    "session.cleanup": _cleanup,
    "session.export": _export,
    "session.import": _import,
}
# `watch` is a stream, not a request/reply, so the server handles it itself.
STREAMING_OPS = frozenset({"watch"})


def lookup(op: str) -> Handler:
    handler = HANDLERS.get(op)
    if handler is not None:
        return handler
    known = ", ".join(sorted([*HANDLERS, *STREAMING_OPS]))
    raise RemoteProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown op {op!r}; known ops: {known}")
