"""What the daemon needs of a catalog shared by many daemons (`--store URL`), as a
Protocol: the sessions layer uses it without knowing the backend. One backend exists,
PostgreSQL (`pgstore.PgCatalog`, opened by `pgstore.connect(url)`).

Every method blocks (a database round trip): callers run them in a worker thread, one
at a time per catalog (sessions/connection.py).

The local data dir stays the daemon's own store and write-ahead log: a shared catalog
holds a copy of what each daemon records (journal lines as they are committed, records
and files as they are saved), leases on open sessions, and change announcements.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

RECORD_FILE = "record.json"  # a session's record among its files


@dataclass(frozen=True, slots=True)
class CatalogRow:
    session_id: str
    name: str | None
    status: str  # open | closed
    created_at: float
    closed_at: float | None
    command_count: int
    blender_version: str | None
    holder: str | None  # the daemon holding an open session's lease, if unexpired


class LeaseHeld(Exception):
    """Another daemon holds the session's unexpired lease: this one may not write it."""

    def __init__(self, session_id: str, holder: str) -> None:
        super().__init__(f"session {session_id} is held by the daemon {holder}")
        self.session_id = session_id
        self.holder = holder


class SharedCatalog(Protocol):
    version: int  # the catalog's schema version

    def close(self) -> None: ...

    # --- records and files ------------------------------------------------------------

    def put_record(
        self,
        record: bytes,
        summary: CatalogRow,
        files: dict[str, bytes] | None = None,
        holder: str | None = None,
    ) -> None:
        """A closed session's record and files, at once. Raises LeaseHeld when another
        daemon holds (or saved) the session."""
        ...

    def note_open(self, row: CatalogRow) -> None: ...

    def record(self, session_id: str) -> bytes | None: ...

    def sessions(self) -> list[CatalogRow]:
        """Every session, newest first."""
        ...

    def row(self, session_id: str) -> CatalogRow | None: ...

    def search(self, text: str) -> list[str]:
        """Ids of saved sessions whose name, objects or free-form data hold `text`."""
        ...

    def named(self, ref: str) -> list[CatalogRow]:
        """The sessions `ref` names (an id, or a name), newest first, two at most."""
        ...

    def files(self, session_id: str) -> dict[str, str]:
        """A session's files: name -> SHA-256."""
        ...

    def file(self, session_id: str, name: str) -> bytes | None: ...

    # --- journals -----------------------------------------------------------------------

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
        """Whole journal lines (the first numbered `first`) and files of an open
        session, committed at once with `holder`'s lease renewed. Raises LeaseHeld."""
        ...

    def journal(self, session_id: str) -> Iterator[bytes]: ...

    def journal_length(self, session_id: str) -> int: ...

    # --- leases and announcements -------------------------------------------------------

    def acquire(self, session_id: str, holder: str, ttl_s: float) -> str:
        """Take or renew a lease; returns who holds it now."""
        ...

    def renew(self, holder: str, ttl_s: float, counts: dict[str, int]) -> set[str]:
        """Renew `holder`'s unexpired leases among `counts` (session -> its command
        count, noted too) at once; returns the sessions renewed."""
        ...

    def release(self, session_id: str, holder: str) -> None: ...

    def notify(self, note: str) -> None: ...

    def counts(self) -> dict[str, int]: ...
