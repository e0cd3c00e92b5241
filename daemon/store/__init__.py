"""The data dir: records, journals, ids. The only package that writes files there."""

from .ids import check_session_name, is_session_id, new_session_id, parse_session_id
from .journal import JournalWriter
from .records import (
    RECORD_FORMAT,
    BlenderInfo,
    CommandRecord,
    JournalData,
    JournalDone,
    JournalOpen,
    JournalStart,
    LastResult,
    RecordError,
    SessionData,
    SessionRecord,
    SessionState,
    SnapshotInfo,
)
from .recovery import ReplayedJournal, replay_journal
from .store import DamagedRecord, ListedRecord, SessionStore, storage_error

__all__ = [
    "RECORD_FORMAT",
    "BlenderInfo",
    "CommandRecord",
    "DamagedRecord",
    "JournalData",
    "JournalDone",
    "JournalOpen",
    "JournalStart",
    "JournalWriter",
    "LastResult",
    "ListedRecord",
    "RecordError",
    "ReplayedJournal",
    "SessionData",
    "SessionRecord",
    "SessionState",
    "SessionStore",
    "SnapshotInfo",
    "check_session_name",
    "is_session_id",
    "new_session_id",
    "parse_session_id",
    "replay_journal",
    "storage_error",
]
