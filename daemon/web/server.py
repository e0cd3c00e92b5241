"""The web app (pages and API behind the access checks) and its hypercorn task, which
runs on trio in the daemon's nursery (hypercorn's trio worker; Starlette runs on anyio,
here on its trio backend)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import structlog
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..protocol import ErrorCode
from ..protocol.ops import StatusResult
from ..sessions import SessionService
from . import pages
from .access import COOKIE, SAFE_METHODS, Access, host_is_loopback, same_origin
from .api import Api, error

log = structlog.get_logger("web")


class Guard:
    """ASGI middleware: the checks of access.py before anything else runs."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        if not host_is_loopback(host):
            await _plain(
                send, 403, "this server answers loopback names only (127.0.0.1, localhost)"
            )
            return
        cookie = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
        cookie_value = cookie.value if cookie is not None else None
        if scope["path"] == "/" and scope["method"] == "GET":
            login = parse_qs(scope["query_string"].decode("latin-1")).get("token")
            if login:
                if self.access.use_login(login[0]):
                    await _logged_in(send, self.access.cookie_secret)
                else:
                    await _plain(send, 401, "this link was used already or is wrong: "
                                 "run blender-session web for a new one")  # fmt: skip
                return
        bearer = headers.get("authorization")
        if not self.access.allows(cookie_value, bearer):
            await _plain(send, 401, "open the link blender-sessiond printed (or run: "
                         "blender-session web), or send Authorization: Bearer <token>")  # fmt: skip
            return
        by_cookie = not self.access.allows(None, bearer)
        origin, referer = headers.get("origin"), headers.get("referer")
        changes = scope["method"] not in SAFE_METHODS
        if by_cookie and changes and not same_origin(origin, referer, host):
            await _plain(send, 403, "a change must come from this page (Origin)")
            return
        await self.app(scope, receive, send)


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def _logged_in(send: Send, secret: str) -> None:
    cookie = f"{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/"
    await send({"type": "http.response.start", "status": 303, "headers": [
        (b"location", b"/"), (b"set-cookie", cookie.encode()),
        (b"cache-control", b"no-store"), (b"content-length", b"0"),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})


async def _not_found(request: Request, failure: Exception) -> Response:
    return error(ErrorCode.NOT_FOUND, f"no such page or endpoint: {request.url.path[:200]}")


async def _not_allowed(request: Request, failure: Exception) -> Response:
    return error(
        ErrorCode.BAD_REQUEST, f"{request.method} is not taken by {request.url.path[:200]}"
    )


def build_app(
    service: SessionService, status: Callable[[], StatusResult], access: Access
) -> ASGIApp:
    app = Starlette(
        routes=[*Api(service, status).routes(), *pages.routes()],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    return Guard(app, access)


class WebServer:
    def __init__(
        self,
        service: SessionService,
        status: Callable[[], StatusResult],
        access: Access,
        host: str,
        port: int,
    ) -> None:
        self.app = build_app(service, status, access)
        self.host, self.port = host, port

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `started()` reports the bound port (with port 0)."""
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1.0
        async with trio.open_nursery() as nursery:
            app: Any = self.app  # Starlette's ASGI types and hypercorn's differ in name only
            binds = await nursery.start(functools.partial(serve, app, config, mode="asgi"))
            port = int(str(binds[0]).rsplit(":", 1)[1])
            log.info("web_listening", host=self.host, port=port)
            task_status.started(port)
