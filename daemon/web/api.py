"""The JSON API under /api/: each route is one control op (daemon/control/ops.py), with
the op's result as the body and its error codes, as `{"error": {"code", "message"}}`
with the HTTP status each code maps to. Session ids in paths are checked before use:
a malformed or unknown one is 404. `GET /api/events` streams the daemon's events
(server-sent events, the `watch` op's stream)."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import structlog
import trio
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..control.ops import OpContext, lookup
from ..events import encode_event
from ..protocol import ErrorCode, ProtocolError
from ..protocol.ops import StatusResult
from ..sessions import SessionService
from ..store import is_session_id

log = structlog.get_logger("web")
HTTP_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_PARAMS: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNKNOWN_COMMAND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.INTERNAL: 500,
    ErrorCode.BUSY: 503,
    ErrorCode.BUSY_TIMEOUT: 503,
    ErrorCode.BLENDER_UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.STORAGE: 507,
}
MAX_BODY_BYTES = 64 * 1024  # an action's params; nothing the page sends comes close
_query_ints = {"limit", "after_seq", "from", "to", "at_seq"}


def error(code: ErrorCode, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code.value, "message": message}}, status_code=HTTP_STATUS[code]
    )


class Api:
    def __init__(self, service: SessionService, status: Callable[[], StatusResult]) -> None:
        self.service = service
        self.context = OpContext(service=service, status=status, client_id="web")

    def routes(self) -> list[Route]:
        return [
            Route("/api/status", self.status),
            Route("/api/sessions", self.sessions),
            Route("/api/events", self.events),
            Route("/api/sessions/{id}", self.session, methods=["GET", "DELETE"]),
            Route("/api/sessions/{id}/timeline", self.timeline),
            Route("/api/sessions/{id}/thumbnail.png", self.thumbnail),
            Route("/api/sessions/{id}/diff", self.diff),
            Route("/api/sessions/{id}/export.tar.gz", self.export),
            Route("/api/sessions/{id}/checkpoints/{seq:int}/state", self.checkpoint_state),
            Route("/api/sessions/{id}/{action}", self.action, methods=["POST"]),
        ]

    async def op(self, op: str, params: dict[str, Any]) -> bytes:
        return await lookup(op)(self.context, msgspec.Raw(msgspec.json.encode(params)))

    async def answer(self, op: str, params: dict[str, Any]) -> Response:
        try:
            return Response(await self.op(op, params), media_type="application/json")
        except ProtocolError as failure:
            return error(failure.code, failure.message)

    # --- reads ----------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        return await self.answer("status", {})

    async def sessions(self, request: Request) -> Response:
        """session.list; `q` also finds sessions by object name and free-form data."""
        query = dict(request.query_params)
        text = query.pop("q", "").strip().lower()
        params = _params(query, {"limit", "cursor", "name", "status"})
        if isinstance(params, Response):
            return params
        if not text:
            return await self.answer("session.list", params)
        return await self.answer("session.list", {**params, "text": text})

    async def session(self, request: Request) -> Response:
        if request.method == "DELETE":
            return await self._about_session(request, "session.delete", set())
        return await self._about_session(request, "session.show", {"after_seq", "limit"})

    async def timeline(self, request: Request) -> Response:
        return await self._about_session(request, "session.timeline", {"after_seq", "limit"})

    async def _about_session(self, request: Request, op: str, allowed: set[str]) -> Response:
        """An op about the session in the path, its query parameters as the op's."""
        session_id = request.path_params["id"]
        if not is_session_id(session_id):
            return _no_such(session_id)
        params = _params(dict(request.query_params), allowed)
        if isinstance(params, Response):
            return params
        return await self.answer(op, {"session_id": session_id, **params})

    async def checkpoint_state(self, request: Request) -> Response:
        """The scene a checkpoint holds (its get_state), for the page's view of it."""
        session_id, seq = request.path_params["id"], request.path_params["seq"]
        if not is_session_id(session_id):
            return _no_such(session_id)
        try:
            await self.op("session.show", {"session_id": session_id, "limit": 1})  # exists
            state = await self.service.store.read_checkpoint_state(session_id, seq)
        except ProtocolError as failure:
            return error(failure.code, failure.message)
        except OSError as failure:
            return error(ErrorCode.STORAGE, f"cannot read the checkpoint: {failure}")
        return Response(state, media_type="application/json")

    async def thumbnail(self, request: Request) -> Response:
        session_id = request.path_params["id"]
        if not is_session_id(session_id):
            return _no_such(session_id)
        try:
            result = json.loads(await self.op("session.thumbnail", {"session_id": session_id}))
        except ProtocolError as failure:
            return error(failure.code, failure.message)
        return Response(
            base64.b64decode(result["png_base64"]),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=5"},
        )

    async def diff(self, request: Request) -> Response:
        session_id = request.path_params["id"]
        if not is_session_id(session_id):
            return _no_such(session_id)
        query = _params(dict(request.query_params), {"from", "to"})
        if isinstance(query, Response):
            return query
        params: dict[str, Any] = {"session_id": session_id, "from_seq": query.get("from", 0)}
        if "to" in query:
            params["to_seq"] = query["to"]
        return await self.answer("session.diff", params)

    async def export(self, request: Request) -> Response:
        """The session as an archive (session.export into a private temp file, streamed,
        then removed)."""
        session_id = request.path_params["id"]
        if not is_session_id(session_id):
            return _no_such(session_id)
        folder = tempfile.mkdtemp(prefix="bss-web-export-")
        path = os.path.join(folder, f"{session_id}-{secrets.token_hex(4)}.tar.gz")
        try:
            await self.op("session.export", {"session_ids": [session_id], "path": path})
        except ProtocolError as failure:
            _remove(folder)
            return error(failure.code, failure.message)
        return FileResponse(
            path,
            media_type="application/gzip",
            filename=f"{session_id}.tar.gz",
            background=BackgroundTask(_remove, folder),
        )

    # --- actions ------------------------------------------------------------------

    ACTIONS = {
        "close": "session.close",
        "checkpoint": "session.checkpoint",
        "rewind": "session.rewind",
        "restore": "session.restore",
        "adopt": "session.adopt",
    }

    async def action(self, request: Request) -> Response:
        session_id, action = request.path_params["id"], request.path_params["action"]
        op = self.ACTIONS.get(action)
        if op is None:
            return error(
                ErrorCode.NOT_FOUND, f"no action {action!r}; known: {sorted(self.ACTIONS)}"
            )
        if not is_session_id(session_id):
            return _no_such(session_id)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error(ErrorCode.BAD_REQUEST, f"a body of at most {MAX_BODY_BYTES} bytes")
        try:
            params = json.loads(body) if body.strip() else {}
        except ValueError as failure:
            return error(ErrorCode.BAD_REQUEST, f"the body is not JSON: {failure}")
        if not isinstance(params, dict):
            return error(ErrorCode.BAD_REQUEST, "the body must be a JSON object")
        return await self.answer(op, {**params, "session_id": session_id})

    # --- live -----------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        return StreamingResponse(
            self._stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def _stream(self) -> AsyncIterator[bytes]:
        """The status, then the daemon's events, coalesced: what arrives within
        EVENT_WINDOW_S goes out together, only the newest of each kind per session or
        Blender (a page needs to know that a session changed, not each of its 5,000
        commands a second)."""
        name, data = encode_event(self.context.status())
        yield _sse(name, data)
        with self.service.events.subscribe() as items:
            while True:
                with trio.move_on_after(KEEPALIVE_S) as idle:
                    first = await items.receive()
                if idle.cancelled_caught:
                    yield b": still here\n\n"  # keeps the browser's connection alive
                    continue
                newest: dict[tuple[str, bytes], bytes] = {_key(*first): first[1]}
                with trio.move_on_after(EVENT_WINDOW_S):
                    while True:
                        item = await items.receive()
                        newest.pop(_key(*item), None)  # keep the order of the newest
                        newest[_key(*item)] = item[1]
                yield b"".join(_sse(name, data) for (name, _), data in newest.items())


KEEPALIVE_S = 15.0
EVENT_WINDOW_S = 0.2
_WHO = re.compile(rb'"(?:session_id|endpoint|blender)":"([^"]*)"')


def _key(name: str, data: bytes) -> tuple[str, bytes]:
    """Events of one kind about one session (or Blender) replace each other."""
    found = _WHO.search(data)
    return name, found.group(1) if found else b""


def _sse(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _params(query: dict[str, str], allowed: set[str]) -> dict[str, Any] | Response:
    unknown = sorted(set(query) - allowed)
    if unknown:
        return error(
            ErrorCode.INVALID_PARAMS,
            f"unknown query parameter {unknown[0]!r}; this takes {', '.join(sorted(allowed))}",
        )
    params: dict[str, Any] = {}
    for key, value in query.items():
        if key in _query_ints:
            try:
                params[key] = int(value)
            except ValueError:
                return error(ErrorCode.INVALID_PARAMS, f"{key} must be an integer, got {value!r}")
        else:
            params[key] = value
    return params


def _no_such(session_id: str) -> Response:
    return error(ErrorCode.NOT_FOUND, f"no session {session_id[:80]!r}")


def _remove(folder: str) -> None:
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)
