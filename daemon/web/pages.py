"""The HTML pages (a gallery of sessions, a page per session) and their static files,
all served by the daemon: nothing loads from the internet, and the Content Security
Policy allows only this origin."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..store import is_session_id

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_STATIC = {
    "app.css": "text/css",
    "gallery.js": "text/javascript",
    "session.js": "text/javascript",
}


def _static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text()


def _page(title: str, script: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{title} - blender-scene-sessions</title>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        '<link rel=stylesheet href="/static/app.css">'
        f'<script defer src="/static/{script}"></script></head>'
        f'<body><header><a href="/" class=brand>blender-scene-sessions</a>'
        f"<span id=live class=live>connecting...</span></header><main>{body}</main></body></html>"
    )


GALLERY = _page(
    "Sessions",
    "gallery.js",
    "<form id=search class=bar role=search>"
    '<input id=q type=search placeholder="name, object or data" aria-label=Search>'
    "<select id=status aria-label=Status><option value=all>all</option>"
    "<option value=open>open</option><option value=closed>closed</option></select>"
    "<span id=count class=muted></span></form><section id=gallery class=gallery></section>",
)
SESSION = _page(
    "Session",
    "session.js",
    "<section id=head class=head></section>"
    "<section class=actions id=actions>"
    "<button data-action=checkpoint>Checkpoint</button>"
    "<button data-action=close>Close and save</button>"
    '<select id=restore-path aria-label="Restore path"><option>auto</option><option>blend</option>'
    "<option>state</option><option>replay</option><option>checkpoint</option></select>"
    '<input id=restore-at type=number min=0 placeholder="at step" aria-label="Restore at step">'
    "<button data-action=restore>Restore</button>"
    "<a id=export class=button>Export</a>"
    "<button data-action=delete class=danger>Delete</button>"
    "<span id=said class=said role=status></span></section>"
    "<section class=diff><h2>Diff</h2><form id=diff-form class=bar>"
    '<input id=diff-from type=number min=0 placeholder=from aria-label="From step">'
    '<input id=diff-to type=number min=0 placeholder=to aria-label="To step">'
    "<button>Compare</button></form><div id=diff></div></section>"
    "<section><h2>Timeline <span id=steps class=muted></span></h2>"
    "<button id=older>Older steps</button>"
    "<table id=timeline><thead><tr><th>Step</th><th>Time</th><th>Kind</th><th>What</th>"
    "<th>Status</th><th>ms</th><th></th></tr></thead><tbody></tbody></table></section>"
    "<section><h2>Step</h2><pre id=step class=step>Pick a step.</pre></section>"
    "<section><h2>Data</h2><pre id=data class=step></pre></section>",
)


def _html(text: str) -> Response:
    return HTMLResponse(text, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})


async def gallery(request: Request) -> Response:
    return _html(GALLERY)


async def session(request: Request) -> Response:
    if not is_session_id(request.path_params["id"]):
        return Response("no such session", status_code=404, media_type="text/plain")
    return _html(SESSION)


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    kind = _STATIC.get(name)
    if kind is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(_static_text(name), media_type=kind, headers={"Cache-Control": "no-cache"})


def routes() -> list[Route]:
    return [
        Route("/", gallery),
        Route("/sessions/{id}", session),
        Route("/static/{name}", static),
    ]
