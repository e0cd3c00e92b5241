"""Params and results of the control protocol's ops (PROTOCOL.md §2)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Raw

from .limits import MAX_BATCH_COMMANDS, MAX_SESSION_NAME_CHARS
from .messages import EMPTY_OBJECT, NULL, ErrorBody, Message, Params
from .scene import SkippedObject

SessionName = Annotated[str, Meta(max_length=MAX_SESSION_NAME_CHARS)]


class OpenParams(Params, frozen=True):
    name: SessionName | None = None
    session_id: str | None = None  # client-chosen: makes open idempotent
    blender: str | None = None  # "host:port" or "port" of the Blender; default: the first


class SessionRefParams(Params, frozen=True):
    session_id: str  # an id, or a unique session name


class ShowParams(Params, frozen=True):
    session_id: str
    after_seq: Annotated[int, Meta(ge=0)] = 0  # the page starts after this step
    limit: Annotated[int, Meta(ge=1, le=100_000)] = 1000  # steps at most (and ~4 MiB)


class PageInfo(Message, omit_defaults=False, frozen=True):
    after_seq: int
    next_after_seq: int | None  # null: this page reached the last step
    last_seq: int
    steps: int  # on this page


class CommandParams(Params, frozen=True):
    session_id: str
    type: str
    params: Raw = EMPTY_OBJECT


class BatchCommand(Params, frozen=True):
    type: str
    params: Raw = EMPTY_OBJECT


class BatchParams(Params, frozen=True):
    """Many scene commands in one request, sent pipelined in order; each is recorded
    with its own seq, as if sent alone."""

    session_id: str
    commands: Annotated[list[BatchCommand], Meta(min_length=1, max_length=MAX_BATCH_COMMANDS)]
    # Sent one at a time, so that none after the first failure is sent (else pipelined).
    stop_on_error: bool = False


DataKey = Annotated[str, Meta(min_length=1, max_length=200)]


class SetDataParams(Params, frozen=True):
    session_id: str
    key: DataKey
    value: Raw  # any JSON value; `null` removes the key


RestorePath = Literal["auto", "blend", "state", "replay", "checkpoint"]


class RestoreParams(Params, frozen=True):
    session_id: str
    name: SessionName | None = None
    path: RestorePath = "auto"  # auto: the best source available
    blender: str | None = None  # which Blender to restore into; default: the first
    at_seq: Annotated[int, Meta(ge=0)] | None = None  # the scene right after this step
    # Only say which path it would take and why (session_id "", nothing opened).
    dry_run: bool = False


class OpResult(Message, omit_defaults=False, frozen=True):
    """Op results keep every field, nulls included, so clients see the whole shape."""


class PongStats(Message, frozen=True):
    """The heartbeat's round trips (ms) over its last samples (up to 512)."""

    samples: int
    p50: float
    p99: float
    max: float


class BlenderLinkInfo(OpResult, frozen=True):
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
    instance_id: str = ""  # the addon's instance (new each Blender start)
    pong_ms: PongStats | None = None


class SessionSummary(OpResult, frozen=True):
    session_id: str
    name: str | None
    status: str  # "open" or "closed"
    created_at: float
    closed_at: float | None
    command_count: int
    size_bytes: int
    restored_from: str | None
    # Why commands are refused, when they are: the Blender this session was recorded
    # in restarted (its scene is not the session's any more). None: nothing to say.
    detached: str | None = None
    blender_version: str | None = None  # additive: the Blender it is (was) recorded in
    # additive, with a shared store: the daemon (host:data dir) holding it open
    held_by: str | None = None


class DamagedEntry(OpResult, frozen=True):
    file: str
    reason: str


class ListParams(Params, frozen=True):
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 100
    cursor: str | None = None  # a previous page's next_cursor
    name: Annotated[str, Meta(max_length=MAX_SESSION_NAME_CHARS)] | None = None  # contains
    status: Literal["all", "open", "closed"] = "all"
    # Contains, case-insensitively: a name, an id, an object's name, free-form data (one
    # page, no cursor; the shared store's saved sessions are searched by the database).
    text: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class ListResult(OpResult, frozen=True):
    """Newest first; `damaged` on the first page only."""

    sessions: list[SessionSummary]
    damaged: list[DamagedEntry]
    next_cursor: str | None = None  # more sessions: pass it as `cursor`


class OpenResult(OpResult, frozen=True):
    session_id: str
    name: str | None
    created: bool  # False when a client-chosen id named a session already open
    restored_from: str | None
    blender: BlenderLinkInfo


class CommandResult(OpResult, frozen=True):
    session_id: str
    seq: int
    type: str
    status: str
    duration_ms: float
    result: Raw = NULL


class BatchItem(OpResult, frozen=True):
    index: int  # in the request's `commands`
    status: str  # success, error (with `error`), or skipped (not sent: stop_on_error)
    seq: int | None = None  # its step, when it succeeded
    result: Raw = NULL
    error: ErrorBody | None = None


class BatchResult(OpResult, frozen=True):
    session_id: str
    results: list[BatchItem]
    succeeded: int
    failed: int
    skipped: int


class StateResult(OpResult, frozen=True):
    session_id: str
    scene: Raw


class CloseResult(OpResult, frozen=True):
    session_id: str
    path: str
    command_count: int
    snapshot_fresh: bool  # False when Blender was gone and the last snapshot was kept


class DeleteResult(OpResult, frozen=True):
    session_id: str
    removed: list[str]


class AdoptParams(Params, frozen=True):
    session_id: str
    blender: str | None = None  # which Blender to bring it into; default: the first


class AdoptResult(OpResult, frozen=True):
    session_id: str
    name: str | None
    commands: int  # in its record, every acknowledged one
    steps: int  # its last step, the adoption's `restart` step included
    resumed: bool  # its scene is back in this daemon's Blender
    error: str | None  # why not, when it is not
    duration_ms: float
    blender: BlenderLinkInfo
    notes: list[str] = []  # what a person should know (other sessions on that Blender)


class RestoreResult(OpResult, frozen=True):
    session_id: str
    restored_from: str
    path: str  # which restore path was taken: "blend", "state", "replay", "checkpoint"
    created: list[str]
    updated: list[str]
    removed: list[str]
    skipped: list[SkippedObject]
    notes: list[str]  # why this path, and anything a person should know
    at_seq: int | None = None  # restored at this step (path "checkpoint")


AbsolutePath = Annotated[str, Meta(pattern=r"^/", min_length=2, max_length=4096)]


class ExportParams(Params, frozen=True):
    path: AbsolutePath  # where the daemon writes the archive (.tar.gz)
    session_ids: list[str] = []  # ids or names; empty with all=true: every closed session
    all: bool = False


class ExportResult(OpResult, frozen=True):
    path: str
    session_ids: list[str]
    bytes: int


class ImportParams(Params, frozen=True):
    path: AbsolutePath
    overwrite: bool = False  # an id that exists: replace it (else keep both, new id)


class ImportedSession(OpResult, frozen=True):
    from_id: str
    to_id: str


class ImportResult(OpResult, frozen=True):
    imported: list[ImportedSession]
    overwritten: list[str]
    notes: list[str] = []  # ids imported under a new id, and why


class CleanupParams(Params, frozen=True):
    older_than_days: Annotated[float, Meta(ge=0)] | None = None  # 0: no age rule (as the flag)
    keep: Annotated[int, Meta(ge=0)] | None = None
    dry_run: bool = False
    delete_all: bool = False  # needed when the rules would delete every closed session


class CleanupResult(OpResult, frozen=True):
    deleted: list[str]  # with dry_run: what would be deleted
    dry_run: bool
    freed_bytes: int
    remaining: int  # closed sessions left


class ThumbnailResult(OpResult, frozen=True):
    session_id: str
    png_base64: str
    bytes: int


class SetDataResult(OpResult, frozen=True):
    session_id: str
    key: str
    keys: list[str]


class StatusResult(OpResult, frozen=True):
    daemon_version: str
    pid: int
    data_dir: str
    uptime_s: float
    control: str
    proxy: str | None  # the recording proxy's host:port, when it runs
    blender: BlenderLinkInfo  # the default Blender
    blenders: list[BlenderLinkInfo]  # every Blender this daemon links to, default first
    open_sessions: list[SessionSummary]
    # Sessions a crash left open whose journals are still being read back (start-up).
    recovering: list[str] = []


class StatsResult(OpResult, frozen=True):
    session_count: int
    total_size_bytes: int
    total_size_mb: float
    storage_dir: str
    command_count: int
    open_sessions: int
    open_journals: int
    damaged_count: int


# --- time travel (PROTOCOL.md §4) ---------------------------------------------------------

Label = Annotated[str, Meta(min_length=1, max_length=200)]
Seq = Annotated[int, Meta(ge=0)]


class CheckpointParams(Params, frozen=True):
    session_id: str
    label: Label | None = None


class CheckpointResult(OpResult, frozen=True):
    session_id: str
    seq: int  # the checkpoint is the scene right after this step
    label: str | None
    bytes: int  # of its .blend and its state
    duration_ms: float  # Blender's time to save it and read the scene
    reason: str


class WebLinkResult(OpResult, frozen=True):
    """`web.link`: a one-time link that logs a browser into the web timeline."""

    url: str


class TimelineParams(Params, frozen=True):
    session_id: str
    after_seq: Seq = 0
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 200


class TimelineItem(OpResult, frozen=True):
    """One entry of the timeline. `kind`: command, edit (a change made beside the
    daemon), checkpoint, rewind, restart."""

    seq: int
    kind: str
    at: float  # wall clock: when it started (a command), happened or was taken
    status: str  # success, error, unknown; failed (a rewind); kept/removed (a checkpoint)
    summary: str  # one line a person reads
    objects: list[str] = []  # the objects it names (created, changed, removed, ...)
    type: str | None = None  # a command's type
    client_id: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    to_seq: int | None = None  # a rewind: the step it went back to
    label: str | None = None  # a checkpoint's
    housekeeping: bool = False  # a command: a blender-mcp probe the proxy answered
    observation: bool = False  # a command: a blender-mcp script that only looked


class TimelineResult(OpResult, frozen=True):
    session_id: str
    entries: list[TimelineItem]
    next_after_seq: int | None  # null: the last step is on this page
    last_seq: int


class DiffParams(Params, frozen=True):
    session_id: str
    from_seq: Seq | None = None
    to_seq: Seq | None = None  # default: the last step
    other_session_id: str | None = None  # diff the final states of two sessions instead


class Renamed(Message, frozen=True):
    from_name: str
    to_name: str


class FieldChange(Message, frozen=True):
    before: Raw
    after: Raw


class ObjectChange(Message, frozen=True):
    name: str
    fields: dict[str, FieldChange]


class DiffResult(OpResult, frozen=True):
    added: list[Raw]  # object records (get_state's shape)
    removed: list[Raw]
    renamed: list[Renamed]
    changed: list[ObjectChange]
    session_id: str = ""
    from_seq: int | None = None
    to_seq: int | None = None
    other_session_id: str | None = None
    exact: bool = True  # False: a step's effect was not known (see notes)
    notes: list[str] = []


class RewindParams(Params, frozen=True):
    session_id: str
    to_seq: Seq


class UndoParams(Params, frozen=True):
    session_id: str
    steps: Annotated[int, Meta(ge=1, le=1_000_000)] = 1  # commands to undo


class RewindResult(OpResult, frozen=True):
    session_id: str
    seq: int  # the rewind's own step
    to_seq: int
    base_seq: int  # the checkpoint it started from
    replayed: int  # steps sent again after it
    skipped: list[str]  # steps it could not account for, and why
    exact: bool
    duration_ms: float
