"""How the CLI shows each op's result to a person. Each renderer takes the op's result
Struct (protocol/ops.py), never an untyped dict."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

import msgspec

from ..protocol.ops import (
    AdoptResult,
    CleanupResult,
    CloseResult,
    CommandResult,
    DeleteResult,
    ExportResult,
    ImportResult,
    ListResult,
    OpenResult,
    PageInfo,
    RestoreResult,
    SetDataResult,
    StateResult,
    StatsResult,
    StatusResult,
)
from ..protocol.scene import SceneState
from ..store import EditEntry, SessionData, tags

_state_decoder = msgspec.json.Decoder(SceneState)


class ShownRecord(msgspec.Struct, frozen=True):
    """What `session.show` returns: the record of PROTOCOL.md §3 (a closed session's
    file, or an open one built from its journal, then with `status: open`) with one
    page of its history, and where the next page starts."""

    format: int
    session_id: str
    data: SessionData
    status: str = "closed"
    page: PageInfo | None = None


def when(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def size(count: int) -> str:
    return f"{count / 1024:.1f} KB" if count < 1024 * 1024 else f"{count / 1024 / 1024:.1f} MB"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def short(data: object, limit: int = 110) -> str:
    text = json.dumps(data, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def status(result: StatusResult) -> str:
    blender = result.blender
    heartbeat = blender.last_heartbeat
    ago = f"{time.time() - heartbeat:.1f} s ago" if heartbeat else "never"
    line = f"blender    {blender.endpoint}: {blender.status}"
    if blender.blender_version:
        line += f" (Blender {blender.blender_version}, heartbeat {ago})"
    if blender.last_error and not blender.connected:
        line += f" - {blender.last_error}"
    lines = [
        f"daemon     {result.daemon_version} pid {result.pid}, control {result.control}",
        f"data dir   {result.data_dir}",
        *([f"proxy      {result.proxy} (for clients of the addon)"] if result.proxy else []),
        line,
        f"sessions   {len(result.open_sessions)} open",
    ]
    for summary in result.open_sessions:
        lines.append(
            f"  {summary.session_id}  {summary.name or ''}  {summary.command_count} commands"
        )
        if summary.detached:
            lines.append(f"    refuses commands: {summary.detached}")
    return "\n".join(lines)


def session_list(result: ListResult) -> str:
    rows = [
        [
            s.session_id,
            s.name or "",
            s.status,
            when(s.created_at),
            when(s.closed_at),
            str(s.command_count),
            size(s.size_bytes),
        ]
        for s in result.sessions
    ]
    text = table(["SESSION", "NAME", "STATUS", "CREATED", "CLOSED", "COMMANDS", "SIZE"], rows)
    for s in result.sessions:  # a shared store: another daemon's, or a stopped one's
        if s.held_by:
            text += f"\n{s.session_id} is held by the daemon {s.held_by}"
        elif s.detached:
            text += f"\n{s.session_id} refuses commands: {s.detached}"
    for damaged in result.damaged:
        text += f"\ndamaged: {damaged.file}: {damaged.reason}"
    return text if rows or result.damaged else "no sessions yet (run: blender-session open)"


def opened(result: OpenResult) -> str:
    state = "opened" if result.created else "already open:"
    note = (
        "" if result.blender.connected
        else f"\nnote: no Blender connected at {result.blender.endpoint} yet"
    )  # fmt: skip
    return f"{state} {result.session_id}{note}"


def command(result: CommandResult) -> str:
    shown = json.dumps(msgspec.json.decode(result.result), indent=2)
    return f"#{result.seq} {result.type} {result.status} ({result.duration_ms:.1f} ms)\n{shown}"


def closed(result: CloseResult) -> str:
    return f"closed {result.session_id} ({result.command_count} commands)\nsaved to {result.path}"


def restored(result: RestoreResult) -> str:
    details = "".join(f"\n  skipped {s.name}: {s.reason}" for s in result.skipped)
    details += "".join(f"\n  note: {note}" for note in result.notes)
    if not result.session_id:  # a dry run
        return f"{result.restored_from} would be restored via {result.path}{details}"
    return (
        f"restored {result.restored_from} into new session {result.session_id} via "
        f"{result.path}: {len(result.created)} created, {len(result.updated)} updated, "
        f"{len(result.removed)} removed{details}"
    )


def adopted(result: AdoptResult) -> str:
    where = f"Blender at {result.blender.endpoint}"
    notes = "".join(f"\n  note: {note}" for note in result.notes)
    if not result.resumed:
        return (
            f"adopted {result.session_id} ({result.commands} commands), but its scene is "
            f"not back in {where}: {result.error}{notes}"
        )
    return (
        f"adopted {result.session_id} {result.name or ''}: {result.commands} commands, "
        f"its scene back in {where} (step {result.steps}) in "
        f"{result.duration_ms / 1000:.2f} s{notes}"
    )


def shown_head(data: SessionData) -> str:
    head = [
        f"session    {data.session_id}  {data.name or ''}",
        f"created    {when(data.created_at)}   closed {when(data.closed_at)}",
        f"blender    {data.blender.version or '?'} at {data.blender.host}:{data.blender.port}",
        f"objects    {len(data.state.objects)}: {names(data.state.objects)}",
        f"commands   {data.command_count}",
    ]
    for key, value in sorted(data.data.items()):
        head.append(f"data       {key} = {short(msgspec.json.decode(value), 100)}")
    if data.restored_from:
        head.append(f"restored   from {data.restored_from}")
    for restart in data.restarts:
        if restart.resumed:
            head.append(
                f"restart    Blender restarted after step {restart.after_seq} "
                f"({when(restart.at)}): the scene was brought back (step {restart.seq})"
            )
        else:
            head.append(
                f"restart    Blender restarted after step {restart.after_seq} "
                f"({when(restart.at)}): later steps are not in this scene"
            )
    snapshot = data.snapshot
    if snapshot is not None and (snapshot.blend or snapshot.thumbnail):
        head.append(
            f"snapshot   .blend: {snapshot.blend or '-'} (Blender "
            f"{snapshot.blender_version or '?'}), thumbnail: {snapshot.thumbnail or '-'}"
        )
    kept = [c for c in data.checkpoints if not c.removed]
    if kept:
        head.append(
            f"checkpoints {len(kept)} kept ({size(sum(c.bytes for c in kept))}): steps "
            + ", ".join(f"{c.seq}{'*' if c.manual else ''}" for c in kept[-20:])
            + (" (* manual)" if any(c.manual for c in kept) else "")
        )
    return "\n".join(head)


def names(items: list[str], shown: int = 10) -> str:
    """A long list of names summarised: the first few, then how many more."""
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return (", ".join(items[:shown]) or "-") + more


@dataclass(frozen=True)
class StepFilter:
    """`show --type T --errors`: which steps a person asked to see."""

    types: frozenset[str] = frozenset()
    errors: bool = False

    def keeps(self, kind: str, status: str) -> bool:
        if self.types and kind not in self.types:
            return False
        return not self.errors or status not in ("success", "kept")


EVERY_STEP = StepFilter()


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def shown_rows(data: SessionData, keep: StepFilter = EVERY_STEP) -> list[list[str]]:
    """A page of history as table rows, in step order: the error of a failed command
    in place of its params."""
    rows: list[tuple[int, list[str]]] = [
        (
            c.seq,
            [
                str(c.seq),
                _clock(c.started_at),
                c.type + tags(c),
                c.status,
                f"{c.duration_ms or 0:.1f}",
                f"{c.error.code}: {c.error.message}"[:100]
                if c.error
                else short(msgspec.json.decode(c.params), 60),
            ],
        )
        for c in data.commands
        if keep.keeps(c.type, c.status)
    ]
    for entry in data.timeline:
        if isinstance(entry, EditEntry):
            if not keep.keeps("edit", "success"):
                continue
            what = f"{len(entry.objects)} changed, {len(entry.removed)} removed ({entry.source})"
            rows.append((entry.seq, [str(entry.seq), _clock(entry.at), "edit", "-", "-", what]))
        elif keep.keeps("rewind", entry.status):
            what = f"to step {entry.to_seq}: {entry.replayed} replayed"
            if entry.error:
                what += f"; {entry.error}"
            row = [str(entry.seq), _clock(entry.at), "rewind", entry.status, "-", what]
            rows.append((entry.seq, row))
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


SHOWN_HEADERS = ["SEQ", "TIME", "TYPE", "STATUS", "MS", "PARAMS OR ERROR"]


def shown(result: ShownRecord) -> str:
    return shown_head(result.data) + "\n" + table(SHOWN_HEADERS, shown_rows(result.data))


def exported(result: ExportResult) -> str:
    return f"wrote {result.path}: {len(result.session_ids)} sessions, {size(result.bytes)}"


def imported(result: ImportResult) -> str:
    lines = [
        f"imported {item.from_id}" + (f" as {item.to_id}" if item.to_id != item.from_id else "")
        for item in result.imported
    ]
    lines += [f"overwrote {session_id}" for session_id in result.overwritten]
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines) or "nothing imported"


def cleaned(result: CleanupResult) -> str:
    verb = "would delete" if result.dry_run else "deleted"
    listing = "".join(f"\n  {session_id}" for session_id in result.deleted)
    return (
        f"{verb} {len(result.deleted)} sessions ({size(result.freed_bytes)}), "
        f"{result.remaining} closed sessions left{listing}"
    )


def deleted(result: DeleteResult) -> str:
    return f"deleted {result.session_id} ({', '.join(result.removed)})"


def data_set(result: SetDataResult) -> str:
    return f"{result.session_id}: {result.key} set; keys: {', '.join(result.keys) or '-'}"


def state(result: StateResult) -> str:
    scene = _state_decoder.decode(result.scene)
    rows = [
        [o.name, o.type, short(list(o.location), 40), o.data_kind or "-"] for o in scene.objects
    ]
    return f"scene {scene.scene!r} frame {scene.frame}: {len(scene.objects)} objects\n" + table(
        ["NAME", "TYPE", "LOCATION", "KIND"], rows
    )


def stats(result: StatsResult) -> str:
    return "\n".join(
        [
            f"sessions   {result.session_count} saved, {result.open_sessions} open, "
            f"{result.damaged_count} damaged",
            f"commands   {result.command_count} in saved sessions",
            f"storage    {size(result.total_size_bytes)} in {result.storage_dir}",
        ]
    )
