"""One PostgreSQL connection, used from trio: psycopg 3 has no trio support, so each
call runs in a worker thread, one at a time (a limiter of one), and the event loop
never waits on the database. A connection that fails is dropped and made again on the
next call."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg
import trio

from ..pgstore import connect
from ..store.shared_catalog import SharedCatalog

T = TypeVar("T")


class Connection:
    def __init__(self, url: str) -> None:
        self.url = url
        self._catalog: SharedCatalog | None = None
        self._limiter = trio.CapacityLimiter(1)

    async def call(self, work: Callable[[SharedCatalog], T]) -> T:
        """`work(catalog)` in a worker thread. Raises what it raises (psycopg.Error)."""

        def run() -> T:
            if self._catalog is None:
                self._catalog = connect(self.url)
            try:
                return work(self._catalog)
            except psycopg.OperationalError:
                self._catalog.close()
                self._catalog = None  # reconnect next time
                raise

        return await trio.to_thread.run_sync(run, limiter=self._limiter)
