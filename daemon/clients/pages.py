"""CLI commands that read something long a page at a time: a session's record
(`show`), and the list of sessions. Whatever a session holds, the CLI holds one page.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import msgspec

from ..protocol.ops import ListResult
from . import render
from .client import Caller

SHOW_PAGE_STEPS = 2000
LIST_PAGE = 500
_HISTORY_SUFFIX = b'"timeline":[],"commands":[]}'
_encoder = msgspec.json.Encoder()


def show(
    client: Caller,
    session: str,
    as_json: bool,
    keep: render.StepFilter = render.EVERY_STEP,
    last: int | None = None,
    out: IO[str] = sys.stdout,
) -> int:
    """Print a session's record: its head, then its history page by page (the steps
    `keep` keeps; with `last`, only the last that many steps are read). With --json,
    the record as one JSON document (commands streamed, then the timeline)."""
    after = 0
    timeline: list[bytes] = []
    first_command = True
    head_written = False
    while True:
        raw = client.call(
            "session.show",
            {
                "session_id": session,
                "after_seq": after,
                "limit": 1 if last and not head_written else SHOW_PAGE_STEPS,
            },
        )
        shown = msgspec.json.decode(raw, type=render.ShownRecord)
        data = shown.data
        if not head_written:
            head_written = True
            if as_json:
                out.write(_json_head(shown))
            else:
                out.write(render.shown_head(data) + "\n")
            start = max(0, shown.page.last_seq - last) if last and shown.page else 0
            if start > after:  # --last N: skip to the last N steps
                after = start
                continue
        if as_json:
            for command in data.commands:
                if not keep.keeps(command.type, command.status):
                    continue
                out.write(("\n" if first_command else ",\n") + _encoder.encode(command).decode())
                first_command = False
            timeline += [_encoder.encode(entry) for entry in data.timeline]
        else:
            rows = render.shown_rows(data, keep)
            if rows:
                out.write(render.table(render.SHOWN_HEADERS, rows) + "\n")
        page = shown.page
        if page is None or page.next_after_seq is None:
            break
        after = page.next_after_seq
    if as_json:
        out.write('\n],"timeline":[' + ",".join(e.decode() for e in timeline) + "]}}\n")
    out.flush()
    return 0


def _json_head(shown: render.ShownRecord) -> str:
    """`{"format":…,"data":{…,"commands":[` of the record being printed."""
    empty = msgspec.structs.replace(shown.data, commands=[], timeline=[])
    data = _encoder.encode(empty)
    assert data.endswith(_HISTORY_SUFFIX)
    envelope = {"format": shown.format, "session_id": shown.session_id, "status": shown.status}
    return (
        _encoder.encode(envelope)[:-1].decode()
        + ',"data":'
        + data[: -len(_HISTORY_SUFFIX)].decode()
        + '"commands":['
    )


def session_list(client: Caller, params: dict[str, Any], every_page: bool, as_json: bool) -> int:
    """Print sessions, newest first: one page (`--limit`), or every page (`--all`)."""
    sessions: list[Any] = []
    damaged: list[Any] = []
    cursor = params.get("cursor")
    while True:
        raw = client.call("session.list", {**params, "cursor": cursor} if cursor else params)
        result = msgspec.json.decode(raw, type=ListResult)
        sessions += result.sessions
        damaged += result.damaged
        cursor = result.next_cursor
        if cursor is None or not every_page:
            break
    shown = ListResult(sessions=sessions, damaged=damaged, next_cursor=cursor)
    if as_json:
        print(json.dumps(msgspec.to_builtins(shown), indent=2))
    else:
        text = render.session_list(shown)
        if cursor is not None:
            text += "\n(more sessions: blender-session list --all, or --cursor " + cursor + ")"
        print(text)
    return 0
