"""The web timeline the daemon serves (`--web-port`, loopback only): a gallery of the
sessions, a page per session (live status, timeline, diff, actions) and a JSON API
under /api/ mirroring the control ops. Starlette on anyio, served by hypercorn's trio
worker in the daemon's own nursery.

- `access`: who may ask (token cookie or bearer, loopback Host, same Origin), pure.
- `api`: the /api/ routes, each a control op, with the ops' error codes.
- `pages`: the HTML pages and their static files (no external assets).
- `server`: the app and its hypercorn task.
"""
