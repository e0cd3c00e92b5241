"""An index of the closed sessions, in SQLite: what `list`, `stats`, `cleanup` and
name lookups read, instead of every record.

The records stay the truth: the index is derived from them and rebuilt from them
when it is missing, damaged, of another schema, or out of date (each entry keeps the
size and mtime of the record it was read from, so a start-up re-reads only records
that changed, or appeared, behind the daemon's back). Nothing is ever derived the
other way round. Blocking: call it from a thread; one connection, one caller at a
time (a lock).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("index")
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    name TEXT,
    created_at REAL NOT NULL,
    closed_at REAL,
    last_activity REAL NOT NULL,
    age_from REAL,
    command_count INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    restored_from TEXT,
    imported_at REAL,
    blender_version TEXT NOT NULL,
    record_size INTEGER NOT NULL,
    record_mtime_ns INTEGER NOT NULL
);
CREATE INDEX sessions_newest ON sessions (created_at DESC, session_id DESC);
CREATE INDEX sessions_by_name ON sessions (name);
CREATE INDEX sessions_by_age ON sessions (age_from DESC);
CREATE TABLE damaged (file TEXT PRIMARY KEY, reason TEXT NOT NULL);
"""
_COLUMNS = (
    "session_id, name, created_at, closed_at, last_activity, age_from, command_count, "
    "size_bytes, restored_from, imported_at, blender_version, record_size, record_mtime_ns"
)


@dataclass(frozen=True, slots=True)
class IndexedSession:
    session_id: str
    name: str | None
    created_at: float
    closed_at: float | None
    last_activity: float
    age_from: float | None  # when its age starts (cleanup): closing, or import if later
    command_count: int
    size_bytes: int  # all of its files
    restored_from: str | None
    imported_at: float | None
    blender_version: str
    record_size: int
    record_mtime_ns: int


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of `newest_first` ended: the next page starts below it."""

    created_at: float
    session_id: str

    def encode(self) -> str:
        return f"{self.created_at!r}/{self.session_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor | None:
        created, slash, session_id = text.partition("/")
        try:
            return cls(float(created), session_id) if slash else None
        except ValueError:
            return None


class SessionIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.rebuilt = False  # set when open() found nothing usable and started afresh
        self.stale = False  # set when a write failed: reconcile before trusting it

    # --- opening ----------------------------------------------------------------------

    def open(self) -> None:
        """Open the index, or start an empty one if there is none, or it is damaged, a
        link, or of another schema (a rebuild then fills it). Where the file cannot be
        written (a full or read-only disk), the index lives in memory for this run."""
        with self._lock:
            if self._db is not None:
                return
            try:
                self._db = self._connect(self.path)
                if self._schema_version() != SCHEMA_VERSION:
                    raise sqlite3.DatabaseError("another schema")
            except sqlite3.OperationalError as error:  # cannot write the file
                log.warning("index_in_memory", reason=str(error))
                self._close_db()
                self._db = self._connect(None)
                self._create()
                self.rebuilt = True
            except sqlite3.DatabaseError:
                self._close_db()
                self._remove_files()
                self._db = self._connect(self.path)
                self._create()
                self.rebuilt = True

    def _connect(self, path: Path | None) -> sqlite3.Connection:
        if path is None:
            return sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        for suffix in ("", "-wal", "-shm"):
            sibling = Path(f"{path}{suffix}")
            if sibling.is_symlink():  # derived data: never follow a link to it
                sibling.unlink()
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _schema_version(self) -> int | None:
        assert self._db is not None
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.OperationalError:  # no meta table: a new file
            self._create()
            return SCHEMA_VERSION
        return int(row[0]) if row else None

    def _create(self) -> None:
        assert self._db is not None
        self._db.executescript(
            f"BEGIN; {_SCHEMA} INSERT INTO meta (key, value) VALUES "
            f"('schema', '{SCHEMA_VERSION}'); COMMIT;"
        )

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def close(self) -> None:
        with self._lock:
            self._close_db()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OSError("the session index is not open")
        return self._db

    # --- writing ----------------------------------------------------------------------

    def _write(self, statements: list[tuple[str, list[tuple[object, ...]]]]) -> None:
        """Run statements in one transaction. A write that fails (a full disk) leaves
        the index stale, never the caller failed: the records are the truth, and the
        next reconcile catches up (`stale` asks for one)."""
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN")
                for statement, rows in statements:
                    db.executemany(statement, rows)
                db.execute("COMMIT")
            except sqlite3.Error as error:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                self.stale = True
                log.warning("index_write_failed", reason=str(error))

    def put(self, sessions: Iterable[IndexedSession]) -> None:
        rows = [_row(session) for session in sessions]
        if rows:
            self._write(
                [
                    (
                        f"INSERT OR REPLACE INTO sessions ({_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                ]
            )

    def remove(self, session_ids: Iterable[str]) -> None:
        ids: list[tuple[object, ...]] = [(session_id,) for session_id in session_ids]
        if ids:
            self._write([("DELETE FROM sessions WHERE session_id = ?", ids)])

    def forget_damaged(self, file: str) -> None:
        self._write([("DELETE FROM damaged WHERE file = ?", [(file,)])])

    def set_damaged(self, damaged: Iterable[tuple[str, str]]) -> None:
        """Replace the list of damaged records (file, reason)."""
        self._write(
            [
                ("DELETE FROM damaged", [()]),
                ("INSERT OR REPLACE INTO damaged (file, reason) VALUES (?, ?)", list(damaged)),
            ]
        )

    # --- reading ----------------------------------------------------------------------

    def known(self) -> dict[str, tuple[int, int, int]]:
        """session id -> (record size, record mtime_ns, bytes of all its files)."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT session_id, record_size, record_mtime_ns, size_bytes FROM sessions"
            )
            return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def set_sizes(self, sizes: Iterable[tuple[str, int]]) -> None:
        """New byte counts (a snapshot or thumbnail came or went; the record did not)."""
        rows: list[tuple[object, ...]] = [(size, session_id) for session_id, size in sizes]
        if rows:
            self._write([("UPDATE sessions SET size_bytes = ? WHERE session_id = ?", rows)])

    def get(self, session_id: str) -> IndexedSession | None:
        with self._lock:
            row = (
                self._conn()
                .execute(f"SELECT {_COLUMNS} FROM sessions WHERE session_id = ?", (session_id,))
                .fetchone()
            )
        return IndexedSession(*row) if row else None

    def newest_first(
        self, limit: int, below: Cursor | None = None, name_contains: str | None = None
    ) -> list[IndexedSession]:
        """A page of sessions, newest first, starting below `below`."""
        where: list[str] = []
        args: list[object] = []
        if below is not None:
            where.append("(created_at < ? OR (created_at = ? AND session_id < ?))")
            args += [below.created_at, below.created_at, below.session_id]
        if name_contains:
            where.append("instr(lower(coalesce(name, '')), lower(?)) > 0")
            args.append(name_contains)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._conn().execute(
                f"SELECT {_COLUMNS} FROM sessions {clause} "
                "ORDER BY created_at DESC, session_id DESC LIMIT ?",
                (*args, limit),
            )
            return [IndexedSession(*row) for row in rows]

    def named(self, name: str) -> list[str]:
        with self._lock:
            rows = self._conn().execute("SELECT session_id FROM sessions WHERE name = ?", (name,))
            return [row[0] for row in rows]

    def totals(self) -> tuple[int, int, int]:
        """(sessions, bytes, commands) of every indexed session."""
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT count(*), coalesce(sum(size_bytes), 0), "
                    "coalesce(sum(command_count), 0) FROM sessions"
                )
                .fetchone()
            )
        return int(row[0]), int(row[1]), int(row[2])

    def expired(self, keep: int | None, older_than: float | None) -> list[tuple[str, int]]:
        """(id, bytes) of the closed sessions cleanup removes: all but the newest `keep`
        by age, and of those the ones aged before `older_than` (either rule alone works
        too). One ordered scan."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT session_id, size_bytes, age_from FROM sessions "
                "WHERE age_from IS NOT NULL ORDER BY age_from DESC, session_id DESC "
                "LIMIT -1 OFFSET ?",
                (keep or 0,),
            )
            return [(row[0], row[1]) for row in rows if older_than is None or row[2] < older_than]

    def closed_count(self) -> int:
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT count(*) FROM sessions WHERE closed_at IS NOT NULL")
                .fetchone()
            )
        return int(row[0])

    def damaged(self) -> list[tuple[str, str]]:
        with self._lock:
            return [
                (row[0], row[1])
                for row in self._conn().execute("SELECT file, reason FROM damaged ORDER BY file")
            ]


def _row(session: IndexedSession) -> tuple[object, ...]:
    return (
        session.session_id,
        session.name,
        session.created_at,
        session.closed_at,
        session.last_activity,
        session.age_from,
        session.command_count,
        session.size_bytes,
        session.restored_from,
        session.imported_at,
        session.blender_version,
        session.record_size,
        session.record_mtime_ns,
    )
