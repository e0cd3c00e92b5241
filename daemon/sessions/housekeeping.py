"""Expiry of closed sessions and closing of idle open ones.

`cleanup` deletes what the index selects (store/index.py: `expired`); `Housekeeper`
runs it on a schedule and closes open sessions that sat idle past their TTL (closed
and saved, never dropped). A session's age counts from when it closed here, or from
when it was imported, if later: importing old sessions must not make them disappear
at the next scheduled cleanup.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
import trio

from ..protocol import ErrorCode, ProtocolError, RemoteProtocolError
from ..protocol.ops import CleanupResult
from ..store import SessionStore
from .registry import OpenSessions

log = structlog.get_logger("cleanup")
SECONDS_PER_DAY = 86400.0
# The scheduled cleanup never removes a session closed less than this long ago, so a
# misconfigured schedule cannot eat this month's work.
SCHEDULE_MINIMUM_AGE_DAYS = 30.0


async def cleanup(
    store: SessionStore,
    older_than_days: float | None,
    keep: int | None,
    dry_run: bool,
    delete_all: bool = False,
) -> CleanupResult:
    """Delete closed sessions older than `older_than_days` and not among the newest
    `keep` (either rule alone works too); the index picks them in one ordered scan.
    `older_than_days` 0 is no age rule, as `--cleanup-older-than-days 0` is for the
    schedule. Rules that would delete every closed session need `delete_all`."""
    if not older_than_days:
        older_than_days = None
    if older_than_days is None and keep is None:
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            "say what to clean up: older_than_days (more than 0), keep, or both "
            "(see --dry-run first)",
        )
    cutoff = None if older_than_days is None else time.time() - older_than_days * SECONDS_PER_DAY
    expired = await store.expired(keep, cutoff)
    closed = await store.closed_count()
    if expired and len(expired) >= closed and not dry_run and not delete_all:
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"this would delete every closed session ({closed}); say so to go ahead "
            "(blender-session cleanup ... --yes; the op's delete_all: true)",
        )
    deleted: list[str] = []
    if not dry_run:
        for session_id, _ in expired:
            try:
                await store.delete(session_id)
            except OSError as error:
                raise store.storage_error(
                    error, f"deleted {len(deleted)} of {len(expired)} sessions"
                ) from None
            deleted.append(session_id)
        if deleted:
            log.info(
                "sessions_expired", deleted=deleted, older_than_days=older_than_days, keep=keep
            )
    return CleanupResult(
        deleted=deleted if not dry_run else [session_id for session_id, _ in expired],
        dry_run=dry_run,
        freed_bytes=sum(size for _, size in expired),
        remaining=closed - len(expired),
    )


class Housekeeper:
    """Background tasks: the cleanup schedule and the idle-session sweep."""

    def __init__(
        self,
        store: SessionStore,
        registry: OpenSessions,
        close: Callable[[str], Awaitable[object]],
        *,
        cleanup_interval_s: float | None,
        cleanup_older_than_days: float | None,
        cleanup_keep: int | None,
        idle_ttl_s: float | None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.close = close
        self.cleanup_interval_s = cleanup_interval_s
        self.cleanup_older_than_days = cleanup_older_than_days
        self.cleanup_keep = cleanup_keep
        self.idle_ttl_s = idle_ttl_s
        self.scheduled_cleanups = 0  # runs done, so far
        self._cleaned = trio.Event()

    async def wait_cleaned(self) -> None:
        """Wait until a scheduled cleanup has run (it first runs right after start)."""
        await self._cleaned.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self.cleanup_interval_s and (self.cleanup_older_than_days or self.cleanup_keep):
                nursery.start_soon(self._cleanup_loop)
            if self.idle_ttl_s:
                nursery.start_soon(self._idle_loop)
            task_status.started()

    async def _cleanup_loop(self) -> None:
        assert self.cleanup_interval_s is not None
        while True:
            await self._scheduled_cleanup()
            await trio.sleep(self.cleanup_interval_s)

    async def _scheduled_cleanup(self) -> None:
        older = max(self.cleanup_older_than_days or 0.0, SCHEDULE_MINIMUM_AGE_DAYS)
        try:
            # The user's flags, with the floor above: every session that old may go.
            await cleanup(self.store, older, self.cleanup_keep, dry_run=False, delete_all=True)
        except (ProtocolError, OSError) as error:
            log.warning("scheduled_cleanup_failed", reason=str(error))
        self.scheduled_cleanups += 1
        self._cleaned.set()

    def idle_sessions(self, idle_ttl_s: float) -> list[str]:
        """Open sessions with nothing in flight and no activity for `idle_ttl_s`."""
        now = trio.current_time()
        return [
            session.session_id for session in self.registry
            if not session.closing and session.in_flight == 0
            and now - session.last_active_at >= idle_ttl_s
        ]  # fmt: skip

    async def _idle_loop(self) -> None:
        assert self.idle_ttl_s is not None
        check_every_s = min(60.0, self.idle_ttl_s / 4)
        while True:
            await trio.sleep(check_every_s)
            for session_id in self.idle_sessions(self.idle_ttl_s):
                try:
                    await self.close(session_id)
                    log.info(
                        "idle_session_closed", session_id=session_id, idle_ttl_s=self.idle_ttl_s
                    )
                except (ProtocolError, OSError) as error:
                    log.warning("idle_close_failed", session_id=session_id, reason=str(error))
