"""The CLI's time-travel commands: `checkpoint`, `log` (the timeline, read page by
page), `diff`, `rewind` and `undo`. Each is one control op (`log` a few); the session
defaults to the only open one, as elsewhere in the CLI."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

import msgspec

from ..protocol.ops import (
    CheckpointResult,
    DiffResult,
    RewindResult,
    TimelineItem,
    TimelineResult,
)
from . import render
from .client import Caller

COMMANDS = ("checkpoint", "log", "diff", "rewind", "undo")
LOG_PAGE = 500
LOG_HEADERS = ["SEQ", "TIME", "KIND", "STATUS", "WHAT", "OBJECTS"]


def add_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    session_help = "session id or name (default: the only open one)"
    p = command("checkpoint", "save an exact copy of the scene now, to rewind to later")
    p.add_argument("label", nargs="?", help="a label for it (kept; never thinned out)")
    p.add_argument("-s", "--session", help=session_help)
    p = command("log", "a session's timeline: commands, edits, checkpoints, rewinds")
    p.add_argument("session", nargs="?", help=session_help)
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="start after this step")
    p.add_argument("--limit", type=int, default=None, help="at most this many entries")
    p = command("diff", "what changed in the scene between two steps (or two sessions)")
    p.add_argument("session", help="session id or name")
    p.add_argument("--from", dest="from_seq", type=int, metavar="N", help="the earlier step")
    p.add_argument("--to", dest="to_seq", type=int, metavar="M", help="the later step "
                   "(default: the last)")  # fmt: skip
    p.add_argument("--other", metavar="SESSION", help="compare with this session's final scene")
    p = command("rewind", "make the scene the one right after step N (nothing is deleted)")
    p.add_argument("--to", dest="to_seq", type=int, required=True, metavar="N")
    p.add_argument("-s", "--session", help=session_help)
    p = command("undo", "rewind to before the last N commands that changed the scene")
    p.add_argument("steps", nargs="?", type=int, default=1, metavar="N", help="(default 1)")
    p.add_argument("-s", "--session", help=session_help)


def run(
    client: Caller,
    args: argparse.Namespace,
    session: str,
    out: IO[str] = sys.stdout,
) -> int:
    command = args.command
    if command == "log":
        return _log(client, session, args.after, args.limit, args.json, out)
    op, params, result_type, shown = _ONE_OP[command](args, session)
    result = msgspec.json.decode(client.call(op, params), type=result_type)
    if args.json:
        out.write(msgspec.json.format(msgspec.json.encode(result), indent=2).decode() + "\n")
    else:
        out.write(shown(result) + "\n")
    return 0


def _log(
    client: Caller, session: str, after: int, limit: int | None, as_json: bool, out: IO[str]
) -> int:
    """The timeline, a page at a time; a table, or one JSON object per line."""
    left = limit
    first = True
    while left is None or left > 0:
        page_limit = LOG_PAGE if left is None else min(left, LOG_PAGE)
        raw = client.call(
            "session.timeline", {"session_id": session, "after_seq": after, "limit": page_limit}
        )
        page = msgspec.json.decode(raw, type=TimelineResult)
        if as_json:
            for entry in page.entries:
                out.write(msgspec.json.encode(entry).decode() + "\n")
        else:
            if first:
                out.write(f"session {page.session_id}: {page.last_seq} step(s)\n")
            if page.entries:
                out.write(render.table(LOG_HEADERS, [_row(e) for e in page.entries]) + "\n")
        first = False
        steps = sum(1 for e in page.entries if e.kind != "checkpoint")
        if left is not None:
            left -= steps
        if page.next_after_seq is None:
            break
        after = page.next_after_seq
    return 0


def _row(entry: TimelineItem) -> list[str]:
    objects = ", ".join(entry.objects[:5]) + (
        f" (+{len(entry.objects) - 5})" if len(entry.objects) > 5 else ""
    )
    seq = str(entry.seq) if entry.kind != "checkpoint" else f"  @{entry.seq}"
    return [
        seq,
        datetime.fromtimestamp(entry.at).strftime("%H:%M:%S"),
        entry.kind,
        entry.status,
        entry.summary + (f" [{entry.error}]" if entry.error and entry.kind == "command" else ""),
        objects or "-",
    ]


# --- the one-op commands ---------------------------------------------------------------

_OneOp = tuple[str, dict[str, Any], type[msgspec.Struct], Callable[[Any], str]]


def _checkpoint(args: argparse.Namespace, session: str) -> _OneOp:
    params = {"session_id": session, **({"label": args.label} if args.label else {})}
    return "session.checkpoint", params, CheckpointResult, checkpointed


def _diff(args: argparse.Namespace, session: str) -> _OneOp:
    params: dict[str, Any] = {"session_id": session}
    if args.other is not None:
        params["other_session_id"] = args.other
    else:
        params["from_seq"] = 0 if args.from_seq is None else args.from_seq
        if args.to_seq is not None:
            params["to_seq"] = args.to_seq
    return "session.diff", params, DiffResult, diffed


def _rewind(args: argparse.Namespace, session: str) -> _OneOp:
    return "session.rewind", {"session_id": session, "to_seq": args.to_seq}, RewindResult, rewound


def _undo(args: argparse.Namespace, session: str) -> _OneOp:
    return "session.undo", {"session_id": session, "steps": args.steps}, RewindResult, rewound


_ONE_OP: dict[str, Callable[[argparse.Namespace, str], _OneOp]] = {
    "checkpoint": _checkpoint,
    "diff": _diff,
    "rewind": _rewind,
    "undo": _undo,
}


# --- how a person sees them --------------------------------------------------------------


def checkpointed(result: CheckpointResult) -> str:
    label = f" {result.label!r}" if result.label else ""
    return (
        f"checkpoint{label} of session {result.session_id} at step {result.seq} "
        f"({render.size(result.bytes)}, {result.duration_ms:.0f} ms of Blender's time)"
    )


def rewound(result: RewindResult) -> str:
    lines = [
        f"session {result.session_id} rewound to step {result.to_seq} (this rewind is step "
        f"{result.seq}): from the checkpoint of step {result.base_seq}, {result.replayed} "
        f"step(s) replayed, in {result.duration_ms:.0f} ms"
    ]
    if not result.exact:
        lines.append("not exact; these steps could not be redone:")
        lines += [f"  {why}" for why in result.skipped]
    return "\n".join(lines)


def diffed(result: DiffResult) -> str:
    if result.other_session_id:
        head = f"session {result.session_id} -> session {result.other_session_id} (final scenes)"
    else:
        head = f"session {result.session_id}: step {result.from_seq} -> step {result.to_seq}"
    lines = [head]
    for raw in result.added:
        lines.append(f"+ {_name(raw)}")
    for raw in result.removed:
        lines.append(f"- {_name(raw)}")
    for renamed in result.renamed:
        lines.append(f"~ {renamed.from_name} -> {renamed.to_name} (renamed)")
    for change in result.changed:
        lines.append(f"~ {change.name}")
        for field, values in sorted(change.fields.items()):
            lines.append(f"    {field}: {bytes(values.before).decode()} -> "
                         f"{bytes(values.after).decode()}")  # fmt: skip
    if len(lines) == 1:
        lines.append("no change")
    if not result.exact:
        lines.append("not exact: " + "; ".join(result.notes))
    return "\n".join(lines)


def _name(raw: msgspec.Raw) -> str:
    record = json.loads(bytes(raw))
    return f"{record.get('name')} ({record.get('data_kind') or record.get('type')})"
