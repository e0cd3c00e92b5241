"""The database's tables, created and migrated by the daemon: each migration runs once,
in order, in one transaction, and `schema_version` says which ran."""

from __future__ import annotations

from typing import Any

import psycopg

MIGRATIONS: tuple[str, ...] = (
    # 1: records, journal, blobs, leases.
    """
    CREATE TABLE sessions (
        session_id      text PRIMARY KEY,
        name            text,
        status          text NOT NULL,           -- open | closed
        created_at      double precision NOT NULL,
        closed_at       double precision,
        command_count   bigint NOT NULL DEFAULT 0,
        blender_version text,
        record          jsonb,                   -- the record (PROTOCOL §3), closed ones
        record_sha256   text,                    -- of the record file's bytes
        saved_at        timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX sessions_newest ON sessions (created_at DESC, session_id DESC);
    CREATE INDEX sessions_name ON sessions (name);
    CREATE TABLE journal (
        session_id text NOT NULL,
        line_no    bigint NOT NULL,              -- the line's place in the journal
        line       jsonb NOT NULL,
        PRIMARY KEY (session_id, line_no)
    );
    CREATE TABLE blobs (
        sha256 text PRIMARY KEY,
        size   bigint NOT NULL
    );
    CREATE TABLE blob_chunks (
        sha256 text NOT NULL REFERENCES blobs ON DELETE CASCADE,
        n      integer NOT NULL,
        data   bytea NOT NULL,
        PRIMARY KEY (sha256, n)
    );
    CREATE TABLE session_files (
        session_id text NOT NULL REFERENCES sessions ON DELETE CASCADE,
        name       text NOT NULL,               -- blend, png, checkpoints/0000000005.blend ...
        sha256     text NOT NULL REFERENCES blobs,
        PRIMARY KEY (session_id, name)
    );
    CREATE TABLE leases (
        session_id text PRIMARY KEY,
        holder     text NOT NULL,               -- the daemon: host and data dir
        expires_at timestamptz NOT NULL
    );
    """,
    # 2: which daemon saved a record, so another's stale copy never replaces it.
    """
    ALTER TABLE sessions ADD COLUMN saved_by text;
    """,
)


def migrate(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """Bring the schema to the newest version; return it. Safe to run from several
    daemons at once (an advisory lock serialises them)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(4242001)")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"the database's schema is version {current}, newer than this daemon's "
                f"{len(MIGRATIONS)}: upgrade the daemon"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            conn.execute(MIGRATIONS[version - 1].encode())
            conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
    return len(MIGRATIONS)
