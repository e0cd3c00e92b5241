"""Params and results of the control protocol's ops (PROTOCOL.md §2)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Raw

from .messages import EMPTY_OBJECT, NULL, Message, SkippedObject


class NoParams(Message, frozen=True):
    pass


class OpenParams(Message, frozen=True):
    name: str | None = None
    session_id: str | None = None  # client-chosen: makes open idempotent
    blender: str | None = None  # "host:port" or "port" of the Blender; default: the first


class SessionRefParams(Message, frozen=True):
    session_id: str  # an id, or a unique session name


class CommandParams(Message, frozen=True):
    session_id: str
    type: str
    params: Raw = EMPTY_OBJECT


DataKey = Annotated[str, Meta(min_length=1, max_length=200)]


class SetDataParams(Message, frozen=True):
    session_id: str
    key: DataKey
    value: Raw  # any JSON value; `null` removes the key


RestorePath = Literal["auto", "blend", "state", "replay"]


class RestoreParams(Message, frozen=True):
    session_id: str
    name: str | None = None
    path: RestorePath = "auto"  # auto: the best source available
    blender: str | None = None  # which Blender to restore into; default: the first


class Reply(Message, omit_defaults=False, frozen=True):
    """Op results keep every field, nulls included, so clients see the whole shape."""


class BlenderLinkInfo(Reply, frozen=True):
    endpoint: str
    status: str
    connected: bool
    blender_version: str
    file: str
    last_heartbeat: float | None
    busy_for_ms: float
    queue_depth: int
    last_error: str
    execute_code_enabled: bool
    found: str  # what answers on the addon port instead of this project's addon, if any


class SessionSummary(Reply, frozen=True):
    session_id: str
    name: str | None
    status: str  # "open" or "closed"
    created_at: float
    closed_at: float | None
    command_count: int
    size_bytes: int
    restored_from: str | None


class DamagedEntry(Reply, frozen=True):
    file: str
    reason: str


class ListResult(Reply, frozen=True):
    sessions: list[SessionSummary]
    damaged: list[DamagedEntry]


class OpenResult(Reply, frozen=True):
    session_id: str
    name: str | None
    created: bool  # False when a client-chosen id named a session already open
    restored_from: str | None
    blender: BlenderLinkInfo


class CommandResult(Reply, frozen=True):
    session_id: str
    seq: int
    type: str
    status: str
    duration_ms: float
    result: Raw = NULL


class StateResult(Reply, frozen=True):
    session_id: str
    scene: Raw


class CloseResult(Reply, frozen=True):
    session_id: str
    path: str
    command_count: int
    snapshot_fresh: bool  # False when Blender was gone and the last snapshot was kept


class DeleteResult(Reply, frozen=True):
    session_id: str
    removed: list[str]


class RestoreResult(Reply, frozen=True):
    session_id: str
    restored_from: str
    path: str  # which restore path was taken: "blend", "state" or "replay"
    created: list[str]
    updated: list[str]
    removed: list[str]
    skipped: list[SkippedObject]
    notes: list[str]  # why this path, and anything a person should know


AbsolutePath = Annotated[str, Meta(pattern=r"^/", min_length=2, max_length=4096)]


class ExportParams(Message, frozen=True):
    path: AbsolutePath  # where the daemon writes the archive (.tar.gz)
    session_ids: list[str] = []  # ids or names; empty with all=true: every closed session
    all: bool = False


class ExportResult(Reply, frozen=True):
    path: str
    session_ids: list[str]
    bytes: int


class ImportParams(Message, frozen=True):
    path: AbsolutePath
    overwrite: bool = False  # an id that exists: replace it (else keep both, new id)


class ImportedSession(Reply, frozen=True):
    from_id: str
    to_id: str


class ImportResult(Reply, frozen=True):
    imported: list[ImportedSession]
    overwritten: list[str]


class CleanupParams(Message, frozen=True):
    older_than_days: Annotated[float, Meta(ge=0)] | None = None
    keep: Annotated[int, Meta(ge=0)] | None = None
    dry_run: bool = False


class CleanupResult(Reply, frozen=True):
    deleted: list[str]  # with dry_run: what would be deleted
    dry_run: bool
    freed_bytes: int
    remaining: int  # closed sessions left


class ThumbnailResult(Reply, frozen=True):
    session_id: str
    png_base64: str
    bytes: int


class SetDataResult(Reply, frozen=True):
    session_id: str
    key: str
    keys: list[str]


class StatusResult(Reply, frozen=True):
    daemon_version: str
    pid: int
    data_dir: str
    uptime_s: float
    control: str
    proxy: str | None  # the recording proxy's host:port, when it runs
    blender: BlenderLinkInfo  # the default Blender
    blenders: list[BlenderLinkInfo]  # every Blender this daemon links to, default first
    open_sessions: list[SessionSummary]


class StatsResult(Reply, frozen=True):
    session_count: int
    total_size_bytes: int
    total_size_mb: float
    storage_dir: str
    command_count: int
    open_sessions: int
    open_journals: int
    damaged_count: int
