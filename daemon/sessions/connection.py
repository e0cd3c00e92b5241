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

    async def call(self, work: Callable[[SharedCatalog], T], timeout_s: float | None = None) -> T:
        """`work(catalog)` in a worker thread. Raises what it raises (psycopg.Error).
        With `timeout_s` (a read someone waits for), OSError after that long: the
        thread is left to finish on its own (a hung database must not hang a `list`)."""
        if timeout_s is not None:
            try:
                with trio.fail_after(timeout_s):
                    return await self._run(work, abandon=True)
            except trio.TooSlowError:
                raise OSError(f"the shared store did not answer within {timeout_s:g} s") from None
        return await self._run(work, abandon=False)

    async def _run(self, work: Callable[[SharedCatalog], T], *, abandon: bool) -> T:

        def run() -> T:
            if self._catalog is None:
                self._catalog = connect(self.url)
            try:
                return work(self._catalog)
            except psycopg.OperationalError:
                self._catalog.close()
                self._catalog = None  # reconnect next time
                raise

        return await trio.to_thread.run_sync(run, limiter=self._limiter, abandon_on_cancel=abandon)
