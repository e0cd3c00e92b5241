"""`blender-session watch` for a person: one line per event, in order; heartbeats
folded into one status line (rewritten in place on a terminal; when piped, printed
when the link's state changes). `--json` prints the raw stream instead."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Any

import msgspec

from ..events import (
    EVENT_NAMES,
    BlenderRestarted,
    CommandDone,
    CommandLate,
    Dropped,
    SceneChanged,
    SessionClosed,
    SessionOpened,
    SharedChanged,
    StorageFailed,
)
from ..protocol.messages import ControlResponse
from ..protocol.ops import BlenderLinkInfo, StatusResult
from . import render

_TYPES = {name: struct for struct, name in EVENT_NAMES.items()}


def heartbeat_line(link: BlenderLinkInfo) -> str:
    if not link.connected:
        return f"Blender {link.endpoint}: {link.status}" + (
            f" - {link.last_error}" if link.last_error else ""
        )
    pong = f", pong p50 {link.pong_ms.p50:.1f} ms" if link.pong_ms else ""
    busy = f", busy {link.busy_for_ms:.0f} ms" if link.busy_for_ms else ""
    return f"Blender {link.blender_version} at {link.endpoint}: {link.status}{pong}{busy}"


def event_line(event: object) -> str | None:
    """What a person reads for one event (None: a heartbeat, shown as the status)."""
    match event:
        case StatusResult(open_sessions=sessions):
            names = ", ".join(s.name or s.session_id for s in sessions) or "none"
            return f"watching; open sessions: {names}"
        case SessionOpened(session_id=session_id, name=name):
            return f"opened  {session_id}" + (f" ({name})" if name else "")
        case SessionClosed(session_id=session_id, path=path):
            return f"closed  {session_id}, saved to {path}"
        case CommandDone(session_id=sid, seq=seq, type=kind, status=status, duration_ms=ms):
            took = f" {ms:.1f} ms" if ms is not None else ""
            return f"#{seq:<6} {kind:<20} {status}{took}  [{sid}]"
        case CommandLate(session_id=sid, seq=seq, type=kind, status=status):
            return f"#{seq:<6} {kind:<20} {status} (its answer came late)  [{sid}]"
        case SceneChanged(blender=blender, missed=missed):
            return f"scene changed in {blender}" + (f" ({missed} more)" if missed else "")
        case StorageFailed(session_id=sid, seq=seq, message=message):
            return f"STORAGE FAILED at #{seq} of {sid}: {message}"
        case BlenderRestarted(blender=blender, sessions=sessions):
            return f"Blender at {blender} restarted; sessions affected: {', '.join(sessions)}"
        case SharedChanged(session_id=sid, daemon=daemon, change=change, line=line):
            what = f"recorded up to journal line {line}" if change == "journal" else change
            return f"elsewhere: {sid} {what} by the daemon {daemon}"
        case Dropped(events=count):
            return f"({count} events skipped: this terminal read too slowly)"
    return None


def watch(items: Iterable[ControlResponse], as_json: bool, out: IO[str] = sys.stdout) -> int:
    on_terminal = out.isatty()
    status = ""
    state: tuple[object, ...] | None = None  # what a change of is printed, when piped
    for item in items:
        if as_json:
            data = msgspec.json.decode(item.data) if item.event else None
            out.write(json.dumps({"event": item.event, "data": data}) + "\n")
            out.flush()
            continue
        if item.event is None:
            continue  # the daemon's acknowledgement of the watch itself
        kind = _TYPES.get(item.event)
        event: Any = msgspec.json.decode(item.data, type=kind) if kind else None
        if isinstance(event, BlenderLinkInfo):
            line = heartbeat_line(event)
            now = (event.endpoint, event.status, event.blender_version, event.last_error)
            if on_terminal:
                status = line
                out.write("\r\x1b[2K" + render.short(status, 150))
            elif now != state:  # piped: when the link's state changes, not its figures
                state = now
                out.write(f"{datetime.now():%H:%M:%S} {line}\n")
            out.flush()
            continue
        text = event_line(event) if event is not None else f"{item.event}"
        stamp = f"{datetime.now():%H:%M:%S} {text}"
        out.write(("\r\x1b[2K" + stamp + "\n" + status) if on_terminal else stamp + "\n")
        out.flush()
    return 0
