"""Reading a data dir when no daemon answers: `list`, `show`, `log`, `thumbnail` and
`export` of saved (closed) sessions, straight from their files, answering the same ops
with the same results as the daemon would, so the CLI prints them the same way.

Read-only and safe while a daemon runs: nothing in the data dir is written, locked or
repaired (no step index is built, no index row, no recovery). A session still open
in a daemon that stopped is listed by its journal but not read: starting the daemon
recovers it. Records are read whole here (the daemon pages through them).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from types import TracebackType

import msgspec

from ..protocol import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from ..protocol.ops import (
    DamagedEntry,
    ExportParams,
    ExportResult,
    ListParams,
    ListResult,
    PageInfo,
    SessionRefParams,
    SessionSummary,
    ShowParams,
    ThumbnailResult,
    TimelineParams,
    TimelineResult,
)
from ..sessions.history import split
from ..sessions.travel import checkpoint_item, timeline_item
from ..store import RecordError, SessionRecord, is_session_id, mentions, parse_session_id
from ..store.archive import export_sessions
from ..store.files import read_file
from ..store.layout import read_head
from ..store.records import JournalOpen, decode_record
from .client import ClientError
from .render import ShownRecord

# The CLI commands that work without a daemon.
OFFLINE_COMMANDS = frozenset({"list", "show", "log", "thumbnail", "export"})
_encoder = msgspec.json.Encoder()
_open_line = msgspec.json.Decoder(JournalOpen)


def has_sessions(data_dir: Path) -> bool:
    """Whether `data_dir` is a data dir a daemon has used (else there is nothing to read)."""
    return (data_dir / "sessions").is_dir()


class OfflineClient:
    """Stands in for ControlClient: `call(op, params)` gives the daemon's bytes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.sessions_dir = data_dir / "sessions"

    def __enter__(self) -> OfflineClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def call(self, op: str, params: object | None = None) -> bytes:
        try:
            return self._answer(op, _encoder.encode(params or {}))
        except RemoteProtocolError as error:
            raise ClientError(error.message, error.code.value) from None
        except DECODE_ERRORS as error:
            raise ClientError(f"params of {op}: {error}", ErrorCode.INVALID_PARAMS.value) from None
        except OSError as error:
            raise ClientError(f"cannot read {self.data_dir}: {error}", "storage") from None

    def _answer(self, op: str, raw: bytes) -> bytes:
        match op:
            case "session.list":
                return _encoder.encode(self._list(msgspec.json.decode(raw, type=ListParams)))
            case "session.show":
                return self._show(msgspec.json.decode(raw, type=ShowParams))
            case "session.timeline":
                asked = msgspec.json.decode(raw, type=TimelineParams)
                return _encoder.encode(self._timeline(asked))
            case "session.thumbnail":
                ref = msgspec.json.decode(raw, type=SessionRefParams).session_id
                return _encoder.encode(self._thumbnail(ref))
            case "session.export":
                return _encoder.encode(self._export(msgspec.json.decode(raw, type=ExportParams)))
        raise RemoteProtocolError(
            ErrorCode.BLENDER_UNAVAILABLE, f"{op} needs the daemon (start it: blender-sessiond)"
        )

    # --- the files ------------------------------------------------------------------

    def path_for(self, session_id: str, suffix: str = ".json") -> Path:
        return self.sessions_dir / f"{parse_session_id(session_id)}{suffix}"

    def _files(self, suffix: str) -> list[Path]:
        try:
            names = os.listdir(self.sessions_dir)
        except FileNotFoundError:
            return []
        return [self.sessions_dir / name for name in names if name.endswith(suffix)]

    def _heads(self) -> tuple[list[SessionRecord], list[DamagedEntry]]:
        heads, damaged = [], []
        for path in self._files(".json"):
            try:
                heads.append(read_head(path, f"record {path.name}")[0])
            except (RecordError, OSError) as error:
                damaged.append(DamagedEntry(file=path.name, reason=str(error)))
        return heads, damaged

    def _resolve(self, ref: str) -> str:
        if is_session_id(ref):
            return ref
        named = [h.data.session_id for h in self._heads()[0] if h.data.name == ref]
        if len(named) == 1:
            return named[0]
        raise RemoteProtocolError(
            ErrorCode.NOT_FOUND,
            f"no saved session named {ref!r} in {self.data_dir}"
            if not named
            else f"several saved sessions are named {ref!r}: {', '.join(named)}; use an id",
        )

    def _record(self, ref: str) -> SessionRecord:
        session_id = self._resolve(ref)
        path = self.path_for(session_id)
        try:
            return decode_record(read_file(path), f"record {path.name}")
        except FileNotFoundError:
            journal = (
                ""
                if not self.path_for(session_id, ".journal").exists()
                else (" (it is open: start the daemon to read it)")
            )
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND, f"no saved session {session_id}{journal}"
            ) from None

    # --- the ops --------------------------------------------------------------------

    def _list(self, asked: ListParams) -> ListResult:
        heads, damaged = self._heads()
        sessions = [] if asked.status == "open" else [_summary(h, "closed") for h in heads]
        if asked.status != "closed":
            sessions += self._open_journals()
        if asked.name:
            sessions = [s for s in sessions if s.name and asked.name in s.name]
        if asked.text:
            mentioning = {h.data.session_id for h in heads if mentions(h.data, asked.text)}
            sessions = [s for s in sessions if s.session_id in mentioning]
        sessions.sort(key=lambda s: (s.created_at, s.session_id), reverse=True)
        return ListResult(sessions=sessions[: asked.limit], damaged=damaged)

    def _open_journals(self) -> list[SessionSummary]:
        found = []
        for path in self._files(".journal"):
            try:
                with path.open("rb") as file:
                    data = _open_line.decode(file.readline()).session
            except (OSError, *DECODE_ERRORS):
                continue
            found.append(
                SessionSummary(
                    session_id=data.session_id,
                    name=data.name,
                    status="open",
                    created_at=data.created_at,
                    closed_at=None,
                    command_count=0,
                    size_bytes=path.stat().st_size,
                    restored_from=data.restored_from,
                    detached="no daemon is running: start it to recover this session",
                )
            )
        return found

    def _show(self, asked: ShowParams) -> bytes:
        record = self._record(asked.session_id)
        data = record.data
        steps = sorted(
            (s for s in [*data.commands, *data.timeline] if s.seq > asked.after_seq),
            key=lambda s: s.seq,
        )
        page, rest = steps[: asked.limit], steps[asked.limit :]
        commands, timeline = split(list(page))
        last = max((s.seq for s in steps), default=asked.after_seq)
        info = PageInfo(
            after_seq=asked.after_seq,
            next_after_seq=page[-1].seq if rest else None,
            last_seq=max(last, data.last_seq or 0),
            steps=len(page),
        )
        shown = msgspec.structs.replace(data, commands=commands, timeline=timeline)
        return _encoder.encode(
            ShownRecord(format=record.format, session_id=data.session_id, data=shown, page=info)
        )

    def _timeline(self, asked: TimelineParams) -> TimelineResult:
        data = self._record(asked.session_id).data
        steps = sorted(
            (s for s in [*data.commands, *data.timeline] if s.seq > asked.after_seq),
            key=lambda s: s.seq,
        )
        page = steps[: asked.limit]
        last = max([data.last_seq or 0, *(s.seq for s in steps)])
        upper = page[-1].seq if page and len(steps) > len(page) else last
        items = [timeline_item(step) for step in page]
        items += [
            checkpoint_item(c)
            for c in data.checkpoints
            if asked.after_seq <= c.seq <= upper and not (c.seq == 0 and asked.after_seq > 0)
        ]
        items.sort(key=lambda item: (item.seq, item.kind == "checkpoint"))
        return TimelineResult(
            session_id=data.session_id,
            entries=items,
            next_after_seq=page[-1].seq if len(steps) > len(page) else None,
            last_seq=last,
        )

    def _thumbnail(self, ref: str) -> ThumbnailResult:
        session_id = self._resolve(ref)
        try:
            png = read_file(self.path_for(session_id, ".png"))
        except FileNotFoundError:
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND, f"session {session_id} has no saved thumbnail"
            ) from None
        return ThumbnailResult(
            session_id=session_id, png_base64=base64.b64encode(png).decode(), bytes=len(png)
        )

    def _export(self, asked: ExportParams) -> ExportResult:
        heads = self._heads()[0]
        if asked.all:
            ids = [h.data.session_id for h in heads]
        else:
            ids = [self._resolve(ref) for ref in asked.session_ids]
            for session_id in ids:
                if not self.path_for(session_id).exists():
                    raise RemoteProtocolError(
                        ErrorCode.NOT_FOUND, f"no saved session {session_id} to export"
                    )
        size = export_sessions(self.path_for, ids, Path(asked.path))
        return ExportResult(path=asked.path, session_ids=ids, bytes=size)


def _summary(record: SessionRecord, status: str) -> SessionSummary:
    data = record.data
    return SessionSummary(
        session_id=data.session_id, name=data.name, status=status, created_at=data.created_at,
        closed_at=data.closed_at, command_count=data.command_count, size_bytes=0,
        restored_from=data.restored_from, blender_version=data.blender.version or None,
    )  # fmt: skip
