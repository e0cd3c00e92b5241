"""Op name -> handler. Each handler decodes its params with the op's Struct (an
unknown key is `invalid_params`) and returns the encoded result; errors are raised as
ProtocolError. `session.command` and `watch` are not here: the server runs the one
command path itself, and streams `watch`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from ..protocol import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from ..protocol.messages import NoParams, Params
from ..protocol.ops import (
    AdoptParams,
    BatchParams,
    CheckpointParams,
    CleanupParams,
    CommandParams,
    DiffParams,
    ExportParams,
    ImportParams,
    ListParams,
    OpenParams,
    RestoreParams,
    RewindParams,
    SessionRefParams,
    SetDataParams,
    ShowParams,
    StatusResult,
    TimelineParams,
    UndoParams,
    WebLinkResult,
)
from ..sessions import SessionService

_encoder = msgspec.json.Encoder()
P = TypeVar("P", bound=Params)


def _no_web() -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class OpContext:
    service: SessionService
    status: Callable[[], StatusResult]  # the daemon's: pid, uptime, endpoints, Blenders
    client_id: str | None
    web_link: Callable[[], str | None] = _no_web  # a new one-time link to the web timeline


Handler = Callable[[OpContext, msgspec.Raw], Awaitable[bytes]]
_decoders: dict[type[Params], msgspec.json.Decoder[Params]] = {}


def decode_params(params: msgspec.Raw, schema: type[P], op: str) -> P:
    """The op's params, or invalid_params naming what is wrong (and the keys it takes)."""
    decoder = _decoders.get(schema)
    if decoder is None:
        decoder = _decoders[schema] = msgspec.json.Decoder(schema)
    try:
        decoded = decoder.decode(params)
    except DECODE_ERRORS as error:
        text = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        if "unknown field" in text:
            text += f"; {op!r} accepts {', '.join(schema.__struct_fields__) or 'no params'}"
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS, f"params of {op!r} are not valid: {text}"
        ) from None
    assert isinstance(decoded, schema)
    return decoded


async def _status(ctx: OpContext, params: msgspec.Raw) -> bytes:
    decode_params(params, NoParams, "status")
    return _encoder.encode(ctx.status())


async def _open(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, OpenParams, "session.open")
    return _encoder.encode(
        await ctx.service.open(name=p.name, session_id=p.session_id, blender=p.blender)
    )


async def _command(ctx: OpContext, params: msgspec.Raw) -> bytes:
    """The awaited form of session.command (the server usually submits it directly)."""
    p = decode_params(params, CommandParams, "session.command")
    return _encoder.encode(await ctx.service.command(p.session_id, p.type, p.params, ctx.client_id))


async def _batch(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, BatchParams, "session.batch")
    result = await ctx.service.batch(p.session_id, p.commands, p.stop_on_error, ctx.client_id)
    return _encoder.encode(result)


async def _state(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SessionRefParams, "session.state")
    return _encoder.encode(await ctx.service.state(p.session_id))


async def _close(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SessionRefParams, "session.close")
    return _encoder.encode(await ctx.service.close(p.session_id))


async def _list(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, ListParams, "session.list")
    if p.text is not None:
        if p.cursor is not None:
            raise RemoteProtocolError(
                ErrorCode.INVALID_PARAMS, "session.list with text is one page: no cursor"
            )
        return _encoder.encode(await ctx.service.search(p.text, p.status, p.limit))
    return _encoder.encode(await ctx.service.list(p.limit, p.cursor, p.name, p.status))


async def _show(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, ShowParams, "session.show")
    return await ctx.service.show(p.session_id, p.after_seq, p.limit)


async def _delete(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SessionRefParams, "session.delete")
    return _encoder.encode(await ctx.service.delete(p.session_id))


async def _stats(ctx: OpContext, params: msgspec.Raw) -> bytes:
    decode_params(params, NoParams, "session.stats")
    return _encoder.encode(await ctx.service.stats())


async def _restore(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, RestoreParams, "session.restore")
    restored = await ctx.service.restore(
        p.session_id, p.name, ctx.client_id, p.path, p.blender, p.at_seq, p.dry_run
    )
    return _encoder.encode(restored)


async def _adopt(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, AdoptParams, "session.adopt")
    return _encoder.encode(await ctx.service.adopt(p.session_id, p.blender))


async def _export(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, ExportParams, "session.export")
    return _encoder.encode(await ctx.service.export(p.session_ids, p.all, p.path))


async def _import(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, ImportParams, "session.import")
    return _encoder.encode(await ctx.service.import_archive(p.path, p.overwrite))


async def _cleanup(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, CleanupParams, "session.cleanup")
    cleaned = await ctx.service.cleanup(p.older_than_days, p.keep, p.dry_run, p.delete_all)
    return _encoder.encode(cleaned)


async def _thumbnail(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SessionRefParams, "session.thumbnail")
    return _encoder.encode(await ctx.service.thumbnail(p.session_id))


async def _set_data(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, SetDataParams, "session.set_data")
    return _encoder.encode(await ctx.service.set_data(p.session_id, p.key, p.value))


async def _checkpoint(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, CheckpointParams, "session.checkpoint")
    return _encoder.encode(await ctx.service.checkpoint(p.session_id, p.label))


async def _timeline(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, TimelineParams, "session.timeline")
    return _encoder.encode(await ctx.service.timeline(p.session_id, p.after_seq, p.limit))


async def _diff(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, DiffParams, "session.diff")
    if (p.other_session_id is None) == (p.from_seq is None):
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            "'session.diff' takes from_seq (and to_seq), or other_session_id: one of them",
        )
    result = await ctx.service.diff(p.session_id, p.from_seq, p.to_seq, p.other_session_id)
    return _encoder.encode(result)


async def _rewind(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, RewindParams, "session.rewind")
    return _encoder.encode(await ctx.service.rewind(p.session_id, p.to_seq, ctx.client_id))


async def _undo(ctx: OpContext, params: msgspec.Raw) -> bytes:
    p = decode_params(params, UndoParams, "session.undo")
    return _encoder.encode(await ctx.service.undo(p.session_id, p.steps, ctx.client_id))


async def _web_link(ctx: OpContext, params: msgspec.Raw) -> bytes:
    decode_params(params, NoParams, "web.link")
    url = ctx.web_link()
    if url is None:
        raise RemoteProtocolError(
            ErrorCode.NOT_FOUND,
            "the web timeline is off: the daemon runs with --no-web, or its port was taken "
            "(its log says which)",
        )
    return _encoder.encode(WebLinkResult(url=url))


HANDLERS: dict[str, Handler] = {
    "status": _status,
    "session.open": _open,
    "session.command": _command,
    "session.batch": _batch,
    "session.state": _state,
    "session.close": _close,
    "session.list": _list,
    "session.show": _show,
    "session.delete": _delete,
    "session.stats": _stats,
    "session.restore": _restore,
    "session.adopt": _adopt,
    "session.set_data": _set_data,
    "session.thumbnail": _thumbnail,
    "session.cleanup": _cleanup,
    "session.export": _export,
    "session.import": _import,
    "session.checkpoint": _checkpoint,
    "session.timeline": _timeline,
    "session.diff": _diff,
    "session.rewind": _rewind,
    "session.undo": _undo,
    "web.link": _web_link,
}
# `watch` is a stream, not a request/reply, so the server handles it itself.
STREAMING_OPS = frozenset({"watch"})
OP_NAMES = frozenset(HANDLERS) | STREAMING_OPS


def lookup(op: str) -> Handler:
    handler = HANDLERS.get(op)
    if handler is not None:
        return handler
    raise RemoteProtocolError(
        ErrorCode.UNKNOWN_COMMAND, f"unknown op {op!r}; known ops: {', '.join(sorted(OP_NAMES))}"
    )
