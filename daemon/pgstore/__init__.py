"""Sessions in PostgreSQL, shared by many daemons (issue 18): the backend of
`--store postgresql://...` (the daemon uses it as a store.shared_catalog.SharedCatalog).

- `schema`: the tables, created and migrated by version.
- `catalog`: `PgCatalog`, the blocking operations on one connection (records as JSONB,
  journal rows, content-addressed chunked blobs, leases, announcements); run it in a
  worker thread (psycopg has no trio support: sessions/connection.py calls it through
  `trio.to_thread.run_sync` on a one-thread limiter, so the event loop never blocks).
- `migrate`: a local data dir's saved sessions into the database and back, checked by
  counts and checksums.
"""

from ..config import STORE_SCHEMES as SCHEMES
from ..store.shared_catalog import SharedCatalog
from .catalog import PgCatalog


def connect(url: str) -> SharedCatalog:
    """The shared catalog `url` names (PostgreSQL: the one backend). Raises ValueError
    for another scheme, psycopg.Error when the database cannot be reached."""
    if not url.startswith(SCHEMES):
        raise ValueError(f"{url!r} is not a postgresql:// URL")
    return PgCatalog(url)


__all__ = ["SCHEMES", "PgCatalog", "connect"]
