"""The data dir: its lock and token, session records, journals, snapshot files and
archives. The only package that reads or writes files there.

- `datadir`: safety checks, the one-daemon lock, the token, control.json, errors.
- `store`: records, listing, journals, snapshots, quarantine.
- `journal`, `recovery`: a session's journal written and read back.
- `records`: the record of PROTOCOL.md §3 and the journal's lines, as Structs.
- `archive`: export and import; `ids`: session ids; `files`: blocking file primitives.
"""

from .datadir import DataDir, DataDirError, DataDirLocked, Token
from .ids import check_session_name, is_session_id, new_session_id, parse_session_id
from .journal import JournalBatch, JournalWriter, Written
from .records import (
    RECORD_FORMAT,
    BlenderInfo,
    BlenderRestart,
    CheckpointInfo,
    CommandRecord,
    CommandStatus,
    EditEntry,
    JournalData,
    JournalDone,
    JournalLate,
    JournalOpen,
    JournalRestart,
    JournalStart,
    LastResult,
    RecordError,
    RecordSummary,
    RewindEntry,
    SessionData,
    SessionRecord,
    SessionState,
    SnapshotInfo,
    TimelineEntry,
    mentions,
    tags,
)
from .recovery import DamagedLine, ReplayedJournal, replay_journal
from .store import DamagedRecord, ListedRecord, SessionStore

__all__ = [
    "RECORD_FORMAT",
    "BlenderInfo",
    "BlenderRestart",
    "CheckpointInfo",
    "CommandRecord",
    "CommandStatus",
    "DamagedLine",
    "DamagedRecord",
    "DataDir",
    "DataDirError",
    "DataDirLocked",
    "EditEntry",
    "JournalBatch",
    "JournalData",
    "JournalDone",
    "JournalLate",
    "JournalOpen",
    "JournalRestart",
    "JournalStart",
    "JournalWriter",
    "LastResult",
    "ListedRecord",
    "RecordError",
    "RecordSummary",
    "ReplayedJournal",
    "RewindEntry",
    "SessionData",
    "SessionRecord",
    "SessionState",
    "SessionStore",
    "SnapshotInfo",
    "TimelineEntry",
    "Token",
    "Written",
    "check_session_name",
    "is_session_id",
    "mentions",
    "new_session_id",
    "parse_session_id",
    "replay_journal",
    "tags",
]
