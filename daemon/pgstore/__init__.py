"""Sessions in PostgreSQL, shared by many daemons (issue 18; this is its first part).

- `schema`: the tables, created and migrated by version.
- `catalog`: `PgCatalog`, the blocking operations on one connection (records as JSONB,
  journal rows, content-addressed chunked blobs, leases); run it in a worker thread
  (psycopg has no trio support: every call goes through `trio.to_thread.run_sync` on a
  one-thread limiter, so the event loop never blocks on the database).
- `migrate`: a local data dir's saved sessions into the database and back, checked by
  counts and checksums.

Not yet wired into the daemon's live path (`--store`): see docs/fleet.md.
"""
