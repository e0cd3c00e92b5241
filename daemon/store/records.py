"""The session record of PROTOCOL.md §3, and the journal's line types, as Structs."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Raw, Struct

from ..protocol.errors import DECODE_ERRORS, ErrorCode, StorageError
from ..protocol.messages import NULL, ErrorBody

RECORD_FORMAT = 1


class Record(Struct, frozen=True, kw_only=True):
    """Records keep every field on disk, nulls included: §3 names them all."""


class BlenderInfo(Record, kw_only=True, frozen=True):
    connected: bool = False
    host: str = "127.0.0.1"
    port: int = 9876
    last_heartbeat: float | None = None
    version: str = ""
    file: str = ""
    # The addon's instance id when the session was bound to it (new each Blender
    # start; "" from an addon that does not send one).
    instance_id: str = ""


class LastResult(Record, kw_only=True, frozen=True):
    status: str
    code: str | None = None
    message: str | None = None


class SessionState(Record, kw_only=True, frozen=True):
    objects: list[str] = []
    selection: str | None = None  # Phase 4 meaning: the active/selected object's name
    last_command: str | None = None
    last_result: LastResult | None = None
    scene: Raw = NULL  # the last get_state snapshot


class SnapshotInfo(Record, kw_only=True, frozen=True):
    blend: str | None = None
    blender_version: str | None = None
    thumbnail: str | None = None


# `unknown`: the command left for Blender and no answer came (the connection dropped,
# the request timed out, Blender stopped answering): it may or may not have run.
CommandStatus = Literal["success", "error", "unknown"]


class CommandRecord(Record, kw_only=True, frozen=True):
    seq: int
    type: str
    params: Raw
    status: CommandStatus
    started_at: float
    duration_ms: float | None
    client_id: str | None
    result: Raw = NULL
    error: ErrorBody | None = None
    # A blender-mcp client's probe (get_polyhaven_status...), answered by the proxy
    # itself: kept in the history, not counted as a scene command.
    housekeeping: bool = False
    # The outcome arrived after the client had been told there was none (a timeout,
    # Blender frozen then thawed): status, result and error are the real outcome.
    late: bool = False
    # A blender-mcp observation script (execute_code wrapped the way its server wraps
    # its read-only scripts) that left the scene as it found it: not a change.
    observation: bool = False


def tags(command: CommandRecord) -> str:
    """What a person reads after a command's type: " (probe)" for housekeeping,
    " (observation)", " (late)"."""
    marks = [
        mark
        for mark, on in (
            ("probe", command.housekeeping),
            ("observation", command.observation),
            ("late", command.late),
        )
        if on
    ]
    return f" ({', '.join(marks)})" if marks else ""


class BlenderRestart(Record, kw_only=True, frozen=True):
    """A different Blender answered under the session. `resumed`: the daemon brought
    the session's scene back into it (a `restart` step, `seq`); else the session was
    detached from it (its scene is not the session's)."""

    at: float  # wall clock
    after_seq: int  # the last step recorded before it
    previous_instance: str
    instance: str
    blender_version: str
    seq: int | None = None  # additive: the restart's own step, when it was resumed
    resumed: bool = False  # additive
    error: str | None = None  # additive: why bringing the scene back failed


# --- the timeline: steps other than commands, and checkpoints ---------------------------


class EditEntry(Record, tag_field="kind", tag="edit", kw_only=True, frozen=True):
    """A change made beside the daemon (a person in the GUI, another client straight to
    the addon), as the addon reported it: the records of the objects added or changed,
    and the names of the ones removed. A step of its own."""

    seq: int
    at: float
    source: str  # "gui" or "client"
    objects: list[Raw] = []  # object records (the shape of get_state's objects)
    removed: list[str] = []


class RewindEntry(Record, tag_field="kind", tag="rewind", kw_only=True, frozen=True):
    """The scene was brought back to what it was right after step `to_seq`; the
    scene after this step is that one. `status` failed: the scene is the checkpoint
    taken at this step instead (whatever Blender had when the rewind stopped).
    `started`: journaled before Blender is touched; the line with the same seq and the
    final status follows. A rewind the daemon died in stays `started` until the
    restarted daemon finishes it."""

    seq: int
    at: float
    to_seq: int
    client_id: str | None = None
    status: Literal["started", "success", "failed"] = "success"
    base_seq: int | None = None  # the checkpoint it started from
    replayed: int = 0  # steps sent again after that checkpoint
    skipped: list[str] = []  # steps it could not account for, and why
    duration_ms: float = 0.0
    error: str | None = None


TimelineEntry = EditEntry | RewindEntry


class CheckpointInfo(Record, tag_field="kind", tag="checkpoint", kw_only=True, frozen=True):
    """An exact copy of the scene right after step `seq`: a .blend Blender saved (in
    `<session id>.checkpoints/`, compressed) and the scene's get_state beside it.
    `removed`: thinned out by retention (its files are gone)."""

    seq: int
    reason: str  # open, opaque, edits, periodic, manual, rewind, restart, close
    taken_at: float
    blend: str  # file names inside the session's checkpoint dir
    state: str
    bytes: int = 0
    duration_ms: float = 0.0  # Blender's time to save it and read the scene
    label: str | None = None
    manual: bool = False  # asked for: never thinned
    removed: bool = False


class SessionData(Record, kw_only=True, frozen=True):
    """The history comes last, timeline then commands (store/layout.py writes each of
    their entries on a line of its own, and reads everything else from the first)."""

    session_id: str
    name: str | None
    created_at: float
    last_activity: float
    closed_at: float | None
    blender: BlenderInfo
    state: SessionState
    command_count: int
    restored_from: str | None
    snapshot: SnapshotInfo | None
    data: dict[str, Raw] = {}
    restarts: list[BlenderRestart] = []  # additive
    imported_at: float | None = None  # additive: when import brought it into this data dir
    checkpoints: list[CheckpointInfo] = []  # additive
    last_seq: int = 0  # additive: the last step (commands and timeline); 0: from commands
    timeline: list[TimelineEntry] = []  # additive: the steps that are not commands
    commands: list[CommandRecord] = []


class SessionRecord(Record, kw_only=True, frozen=True):
    format: int
    session_id: str
    saved_at: str
    data: SessionData


class RecordSummary(Record, kw_only=True, frozen=True):
    """What `list` shows of a record, decoded without its history."""

    session_id: str
    name: str | None
    created_at: float
    closed_at: float | None
    command_count: int
    restored_from: str | None
    last_activity: float = 0.0
    imported_at: float | None = None
    blender: BlenderInfo = BlenderInfo()


# --- journal lines: one JSON object per line, `kind` says which ----------------------


class JournalOpen(Record, tag_field="kind", tag="open", kw_only=True, frozen=True):
    """First line: what the session is, so a crash can be recovered from here alone.
    `format` is the journal's format (absent: 1), checked before any other line."""

    session: SessionData
    format: int = RECORD_FORMAT


class JournalStart(Record, tag_field="kind", tag="start", kw_only=True, frozen=True):
    """Written (and waited for) before a command goes to Blender."""

    seq: int
    type: str
    params: Raw
    started_at: float
    client_id: str | None
    housekeeping: bool = False


class JournalDone(Record, tag_field="kind", tag="done", kw_only=True, frozen=True):
    """The outcome; `unknown` with the reason in `error` when no answer came."""

    seq: int
    status: CommandStatus
    duration_ms: float
    result: Raw = NULL
    error: ErrorBody | None = None
    state: SessionState | None = None  # the session's state after the command
    observation: bool = False  # additive: CommandRecord.observation


class JournalLate(Record, tag_field="kind", tag="late", kw_only=True, frozen=True):
    """The real outcome of an `unknown` command, arrived after its client was answered."""

    seq: int
    status: Literal["success", "error"]
    duration_ms: float
    result: Raw = NULL
    error: ErrorBody | None = None


class JournalRestart(Record, tag_field="kind", tag="restart", kw_only=True, frozen=True):
    restart: BlenderRestart


class JournalData(Record, tag_field="kind", tag="data", kw_only=True, frozen=True):
    """A free-form value a client attached (`value` null: the key was removed)."""

    key: str
    value: Raw


JournalLine = (
    JournalOpen | JournalStart | JournalDone | JournalData | JournalLate | JournalRestart
    | EditEntry | RewindEntry | CheckpointInfo
)  # fmt: skip


class _FormatProbe(Struct):
    format: int


class _JournalFormatProbe(Struct):
    format: int = 1


_journal_format_decoder = msgspec.json.Decoder(_JournalFormatProbe)


_format_decoder = msgspec.json.Decoder(_FormatProbe)
_record_decoder = msgspec.json.Decoder(SessionRecord)


class _SummaryEnvelope(Struct):
    format: int
    data: RecordSummary


_summary_decoder = msgspec.json.Decoder(_SummaryEnvelope)
_journal_decoder: msgspec.json.Decoder[JournalLine] = msgspec.json.Decoder(JournalLine)
_encoder = msgspec.json.Encoder()


class RecordError(StorageError):
    """A record on disk that cannot be read: damaged, or from a newer format."""


def encode_record(record: SessionRecord) -> bytes:
    return _encoder.encode(record)


def check_format(data: bytes, what: str) -> None:
    """Refuse a newer `format` before reading anything else of the record."""
    try:
        version = _format_decoder.decode(data).format
    except DECODE_ERRORS as error:
        raise RecordError(ErrorCode.INTERNAL, f"{what} is damaged: {error}") from None
    if version > RECORD_FORMAT:
        raise RecordError(
            ErrorCode.INVALID_PARAMS,
            f"{what} has format {version}, newer than this daemon reads ({RECORD_FORMAT}); "
            "upgrade blender-scene-sessions to open it",
        )


def decode_record(data: bytes, what: str) -> SessionRecord:
    check_format(data, what)
    try:
        return _record_decoder.decode(data)
    except DECODE_ERRORS as error:
        raise RecordError(ErrorCode.INTERNAL, f"{what} is damaged: {error}") from None


def decode_summary(data: bytes, what: str) -> RecordSummary:
    """The fields `list` shows, without decoding the command history into objects."""
    check_format(data, what)
    try:
        return _summary_decoder.decode(data).data
    except DECODE_ERRORS as error:
        raise RecordError(ErrorCode.INTERNAL, f"{what} is damaged: {error}") from None


def encode_journal_line(line: JournalLine) -> bytes:
    return _encoder.encode(line) + b"\n"


def decode_journal_line(line: bytes) -> JournalLine:
    return _journal_decoder.decode(line)


def check_journal_format(first_line: bytes, what: str) -> None:
    """Refuse a journal written in a newer format, before reading its lines."""
    try:
        version = _journal_format_decoder.decode(first_line).format
    except DECODE_ERRORS:
        return  # not readable as an object: the line decoder words the damage
    if version > RECORD_FORMAT:
        raise RecordError(
            ErrorCode.INTERNAL,
            f"{what} has format {version}, newer than this daemon reads ({RECORD_FORMAT}); "
            "upgrade blender-scene-sessions to read it",
        )


def mentions(data: SessionData, text: str) -> bool:
    """Whether a session's name, id, objects' names or free-form data contain `text`
    (case-insensitively): what `session.list` with `text` finds."""
    needle = text.lower()
    return (
        needle in (data.name or "").lower()
        or needle in data.session_id
        or any(needle in name.lower() for name in data.state.objects)
        or any(needle in bytes(value).decode().lower() for value in data.data.values())
    )
