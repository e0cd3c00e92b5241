"""The session catalog in PostgreSQL (a store.shared_catalog.SharedCatalog), on one
connection. Blocking (psycopg 3): the
daemon runs each call in a worker thread, one at a time per connection
(`trio.to_thread.run_sync` with a limiter of one), so the event loop never waits on
the database.

Binary files (.blend snapshots and checkpoints, thumbnails) are stored once per
content: a blob is its SHA-256 and its bytes in chunks of CHUNK_BYTES, and a session's
files name the blobs they are.

A lease row with an expiry holds an open session for one daemon (not an advisory lock:
those belong to a connection, so a daemon's reconnect after a network blip would lose
its sessions silently, and a lease row shows who holds what to every daemon and to
`list`). A daemon renews its leases well before they expire; one that dies stops
renewing, and once the expiry passes another may take the lease.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from ..store import SessionData
from ..store.shared_catalog import RECORD_FILE, CatalogRow, LeaseHeld
from . import schema

CHUNK_BYTES = 1024 * 1024
# LISTEN/NOTIFY: every change to a session is announced on this channel, as JSON
# {"session_id", "daemon", "change": journal | saved | adopted, "line"}, so each daemon's
# watchers (and web pages) see what the others do.
CHANNEL = "bss_sessions"
CONNECT_TIMEOUT_S = 5  # a database that does not answer: a list or a publish waits no longer


def conninfo(url: str) -> str:
    """How the daemon connects: `url`, a connect timeout, and TCP keepalives, so a
    database host that vanished (no reset, packets dropped) is found out in about
    5 + 3 * 2 s instead of the kernel's hours."""
    return make_conninfo(
        url, connect_timeout=CONNECT_TIMEOUT_S, keepalives=1, keepalives_idle=5,
        keepalives_interval=2, keepalives_count=3,
    )  # fmt: skip


def change_note(session_id: str, daemon: str | None, change: str, line: int | None = None) -> str:
    """A NOTIFY payload (well under PostgreSQL's 8,000 bytes: ids and paths only)."""
    return json.dumps({"session_id": session_id, "daemon": daemon, "change": change,
                       "line": line})  # fmt: skip


def saved_row(data: SessionData) -> CatalogRow:
    """The catalog's row of a saved session, from its record."""
    return CatalogRow(
        session_id=data.session_id, name=data.name, status="closed",
        created_at=data.created_at, closed_at=data.closed_at,
        command_count=data.command_count, blender_version=data.blender.version or None,
        holder=None,
    )  # fmt: skip


class PgCatalog:
    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
            conninfo(url), autocommit=True
        )
        self.version = schema.migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    # --- records --------------------------------------------------------------------

    def put_record(
        self,
        record: bytes,
        summary: CatalogRow,
        files: dict[str, bytes] | None = None,
        holder: str | None = None,
    ) -> None:
        """A closed session's record (the file's bytes, kept as JSONB) and its files,
        in one transaction. Raises LeaseHeld when a daemon other than `holder` holds
        the session open (it was adopted: this copy of it is not the record)."""
        digest = hashlib.sha256(record).hexdigest()
        with self.conn.transaction():
            held = self.conn.execute(
                "SELECT holder FROM leases WHERE session_id = %s AND expires_at > now() FOR UPDATE",
                (summary.session_id,),
            ).fetchone()
            if held is not None and held[0] != holder:
                raise LeaseHeld(summary.session_id, str(held[0]))
            saved = self.conn.execute(
                "SELECT saved_by FROM sessions WHERE session_id = %s AND status = 'closed'",
                (summary.session_id,),
            ).fetchone()
            if holder is not None and saved is not None and saved[0] not in (None, holder):
                raise LeaseHeld(summary.session_id, str(saved[0]))  # it closed it there
            self.conn.execute(
                """
                INSERT INTO sessions (session_id, name, status, created_at, closed_at,
                    command_count, blender_version, record, record_sha256, saved_at, saved_by)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s::text::jsonb, %s, now(), %s)
                ON CONFLICT (session_id) DO UPDATE SET name = EXCLUDED.name,
                    saved_by = EXCLUDED.saved_by,
                    status = EXCLUDED.status, closed_at = EXCLUDED.closed_at,
                    command_count = EXCLUDED.command_count,
                    blender_version = EXCLUDED.blender_version, record = EXCLUDED.record,
                    record_sha256 = EXCLUDED.record_sha256, saved_at = now()
                """,
                (summary.session_id, summary.name, summary.status, summary.created_at,
                 summary.closed_at, summary.command_count, summary.blender_version,
                 record.decode(), digest, holder),
            )  # fmt: skip
            # Saved: closed, so no daemon holds it any more, and its journal's copy is in
            # the record (the journal table holds open sessions only).
            self.conn.execute("DELETE FROM leases WHERE session_id = %s", (summary.session_id,))
            self.conn.execute("DELETE FROM journal WHERE session_id = %s", (summary.session_id,))
            # The file's exact bytes too: JSONB keeps the content, not the text.
            for name, data in {RECORD_FILE: record, **(files or {})}.items():
                self._put_file(summary.session_id, name, data)
            self.notify(change_note(summary.session_id, holder, "saved"))

    def note_open(self, row: CatalogRow) -> None:
        """An open session (no record yet), so every daemon's list shows it; a session
        already closed here stays closed."""
        self.conn.execute(
            """
            INSERT INTO sessions (session_id, name, status, created_at, command_count,
                blender_version)
            VALUES (%s, %s, 'open', %s, %s, %s)
            ON CONFLICT (session_id) DO UPDATE SET command_count = EXCLUDED.command_count
                WHERE sessions.status = 'open'
            """,
            (row.session_id, row.name, row.created_at, row.command_count, row.blender_version),
        )

    def record(self, session_id: str) -> bytes | None:
        """The record as it was saved (the file's bytes), or None."""
        return self.file(session_id, RECORD_FILE)

    def record_sha256(self, session_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT record_sha256 FROM sessions WHERE session_id = %s", (session_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def sessions(self) -> list[CatalogRow]:
        """Every session, newest first, with the holder of each unexpired lease."""
        rows = self.conn.execute(
            f"{_ROWS} ORDER BY s.created_at DESC, s.session_id DESC"
        ).fetchall()
        return [CatalogRow(*row) for row in rows]

    def search(self, text: str) -> list[str]:
        """Ids of closed sessions whose name, objects or free-form data hold `text`
        (the records are JSONB: searched by the database)."""
        pattern = f"%{text}%"
        rows = self.conn.execute(
            """
            SELECT session_id FROM sessions
            WHERE name ILIKE %s
               OR record -> 'data' -> 'state' -> 'objects' @? '$[*] ? (@ like_regex $p flag "i")'
               OR (record -> 'data' -> 'data')::text ILIKE %s
            """.replace("$p", '"' + _regex_literal(text) + '"'),
            (pattern, pattern),
        ).fetchall()
        return [str(row[0]) for row in rows]

    # --- files (content-addressed blobs) ----------------------------------------------

    def _put_file(self, session_id: str, name: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        inserted = self.conn.execute(
            "INSERT INTO blobs (sha256, size) VALUES (%s, %s) ON CONFLICT DO NOTHING "
            "RETURNING sha256",
            (digest, len(data)),
        ).fetchone()
        if inserted is not None:  # a new content: its chunks
            with self.conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO blob_chunks (sha256, n, data) VALUES (%s, %s, %s)",
                    [(digest, n, chunk) for n, chunk in enumerate(_chunks(data))],
                )
        self.conn.execute(
            "INSERT INTO session_files (session_id, name, sha256) VALUES (%s, %s, %s) "
            "ON CONFLICT (session_id, name) DO UPDATE SET sha256 = EXCLUDED.sha256",
            (session_id, name, digest),
        )

    def files(self, session_id: str) -> dict[str, str]:
        """A session's files: name -> SHA-256."""
        rows = self.conn.execute(
            "SELECT name, sha256 FROM session_files WHERE session_id = %s ORDER BY name",
            (session_id,),
        ).fetchall()
        return {str(name): str(digest) for name, digest in rows}

    def file(self, session_id: str, name: str) -> bytes | None:
        rows = self.conn.execute(
            """
            SELECT c.data FROM session_files f JOIN blob_chunks c USING (sha256)
            WHERE f.session_id = %s AND f.name = %s ORDER BY c.n
            """,
            (session_id, name),
        ).fetchall()
        if not rows:
            return None
        return b"".join(bytes(row[0]) for row in rows)

    # --- journal ----------------------------------------------------------------------

    def append_journal(
        self,
        session_id: str,
        first: int,
        lines: bytes,
        holder: str,
        ttl_s: float,
        files: dict[str, bytes] | None = None,
        row: CatalogRow | None = None,
    ) -> int:
        """Journal lines (whole JSON lines, each ending in a newline; the first is line
        number `first`) and files (checkpoints) of an open session, and its catalog
        `row` when given, in one transaction that also renews `holder`'s lease:
        committed when this returns. Raises LeaseHeld (nothing written) when another
        daemon holds it. A line already there is left as it is. Returns how many were
        new."""
        text = lines.removesuffix(b"\n").decode()  # split by the server
        note = change_note(session_id, holder, "journal", first + lines.count(b"\n") - 1)
        params = {"sid": session_id, "holder": holder, "ttl": ttl_s, "first": first,
                  "lines": text, "note": note}  # fmt: skip
        if not files and row is None:
            # The common case, one statement (one round trip, its own transaction): the
            # lease taken or renewed, and the lines inserted only if it was.
            found = self.conn.execute(_APPEND, params).fetchone()
            if found is None or found[0] is None:
                if self._closed(session_id):
                    return 0  # saved meanwhile: its record has these lines
                raise LeaseHeld(session_id, self._holder(session_id) or "?")
            return int(found[1])
        with self.conn.transaction():
            if self._closed(session_id):
                return 0
            # The lease row stays locked until the commit: an adopter's take waits, then
            # finds it renewed; or it took it first, and then nothing is written here.
            taken = self._take_lease(session_id, holder, ttl_s)
            if taken != holder:
                raise LeaseHeld(session_id, taken)
            if row is not None:
                self.note_open(row)
            for name, data in (files or {}).items():
                self._put_file(session_id, name, data)
            inserted = self.conn.execute(
                f"WITH ins AS ({_INSERT_LINES} ON CONFLICT DO NOTHING RETURNING 1) "
                "SELECT count(*) FROM ins",
                params,
            ).fetchone()
            self.notify(note)
            return 0 if inserted is None else int(inserted[0])

    def journal_length(self, session_id: str) -> int:
        """How many of a session's journal lines are here (the highest line number)."""
        row = self.conn.execute(
            "SELECT coalesce(max(line_no), 0) FROM journal WHERE session_id = %s", (session_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def journal(self, session_id: str) -> Iterator[bytes]:
        """A session's journal lines, in order."""
        with self.conn.cursor() as cursor:
            cursor.execute(
                "SELECT line::text FROM journal WHERE session_id = %s ORDER BY line_no",
                (session_id,),
            )
            for (line,) in cursor:
                yield str(line).encode()

    # --- leases -----------------------------------------------------------------------

    def acquire(self, session_id: str, holder: str, ttl_s: float) -> str:
        """Take or renew the lease of an open session; returns who holds it now (this
        holder if it got it: free, expired, or its own)."""
        with self.conn.transaction():
            return self._take_lease(session_id, holder, ttl_s)

    def renew(self, holder: str, ttl_s: float, counts: dict[str, int]) -> set[str]:
        """Renew `holder`'s unexpired leases on these open sessions, and note their
        command counts, in one transaction. Returns the sessions renewed."""
        ids, numbers = list(counts), list(counts.values())
        with self.conn.transaction():
            renewed = self.conn.execute(
                """
                UPDATE leases SET expires_at = now() + make_interval(secs => %s)
                WHERE holder = %s AND expires_at > now() AND session_id = ANY(%s)
                RETURNING session_id
                """,
                (ttl_s, holder, ids),
            ).fetchall()
            self.conn.execute(
                """
                UPDATE sessions s SET command_count = c.n
                FROM unnest(%s::text[], %s::bigint[]) AS c(id, n)
                WHERE s.session_id = c.id AND s.status = 'open'
                """,
                (ids, numbers),
            )
        return {str(row[0]) for row in renewed}

    def _take_lease(self, session_id: str, holder: str, ttl_s: float) -> str:
        taken = {"sid": session_id, "holder": holder, "ttl": ttl_s}
        row = self.conn.execute(_TAKE_LEASE, taken).fetchone()
        if row is not None:
            return str(row[0])
        return self._holder(session_id) or holder

    def _closed(self, session_id: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM sessions WHERE session_id = %s AND status = 'closed'", (session_id,)
            ).fetchone()
            is not None
        )

    def _holder(self, session_id: str) -> str | None:
        held = self.conn.execute(
            "SELECT holder FROM leases WHERE session_id = %s", (session_id,)
        ).fetchone()
        return None if held is None else str(held[0])

    def named(self, ref: str) -> list[CatalogRow]:
        """The sessions `ref` names: its id, or its name (newest first)."""
        rows = self.conn.execute(
            f"{_ROWS} WHERE s.session_id = %s OR s.name = %s "
            "ORDER BY s.created_at DESC, s.session_id DESC LIMIT 2",
            (ref, ref),
        ).fetchall()
        return [CatalogRow(*row) for row in rows]

    def row(self, session_id: str) -> CatalogRow | None:
        """One session's row, with the holder of its unexpired lease."""
        found = self.conn.execute(f"{_ROWS} WHERE s.session_id = %s", (session_id,)).fetchone()
        return None if found is None else CatalogRow(*found)

    def notify(self, note: str) -> None:
        """Announce a change to every listening daemon (at the commit, when in a
        transaction)."""
        self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, note))

    def release(self, session_id: str, holder: str) -> None:
        self.conn.execute(
            "DELETE FROM leases WHERE session_id = %s AND holder = %s", (session_id, holder)
        )

    def counts(self) -> dict[str, int]:
        """Rows per table (sizing, and what migrate checks)."""
        tables = ("sessions", "journal", "blobs", "blob_chunks", "session_files", "leases")
        return {
            table: int(_one(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()))
            for table in tables
        }


# A session's row, with the holder of its lease while that has not expired.
_ROWS = """
    SELECT s.session_id, s.name, s.status, s.created_at, s.closed_at, s.command_count,
           s.blender_version, CASE WHEN l.expires_at > now() THEN l.holder END
    FROM sessions s LEFT JOIN leases l USING (session_id)
"""
# A lease is taken when free, expired or the taker's own, and never for a closed session
# (its record is saved: a late journal write must not bring it back).
_TAKE_LEASE = """
    INSERT INTO leases (session_id, holder, expires_at)
    SELECT %(sid)s, %(holder)s, now() + make_interval(secs => %(ttl)s)
    WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE session_id = %(sid)s AND status = 'closed')
    ON CONFLICT (session_id) DO UPDATE
        SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
        WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= now()
    RETURNING holder
"""
# The lines as one text, split by the server: no per-line work in the daemon.
_INSERT_LINES = """
    INSERT INTO journal (session_id, line_no, line)
    SELECT %(sid)s, %(first)s::bigint + t.n - 1, t.l::jsonb
    FROM unnest(string_to_array(%(lines)s, E'\\n')) WITH ORDINALITY AS t(l, n)
"""
# The lease and the lines in one statement: the lines go in only if the lease did.
_APPEND = f"""
    WITH lease AS ({_TAKE_LEASE}),
    ins AS ({_INSERT_LINES} WHERE EXISTS (SELECT 1 FROM lease) ON CONFLICT DO NOTHING
             RETURNING 1)
    SELECT (SELECT holder FROM lease), (SELECT count(*) FROM ins),
           CASE WHEN EXISTS (SELECT 1 FROM lease) THEN pg_notify('{CHANNEL}', %(note)s) END
"""


def _one(row: tuple[Any, ...] | None) -> int:
    assert row is not None
    return int(row[0])


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, max(len(data), 1), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]


def _regex_literal(text: str) -> str:
    """`text` as a literal inside a jsonpath like_regex string."""
    special = set('.^$*+?()[]{}|\\"')
    return "".join("\\\\" + ch if ch in special else ch for ch in text)
