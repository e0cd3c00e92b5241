"""Expiry of closed sessions and closing of idle open ones.

`select_expired` is the policy (pure); `Housekeeper` runs it on a schedule and closes
open sessions that sat idle past their TTL (closed and saved, never dropped).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog
import trio

from .protocol import ErrorCode, RemoteProtocolError
from .protocol.ops import CleanupResult
from .store import ListedRecord

if TYPE_CHECKING:
    from .sessions import SessionManager

log = structlog.get_logger("cleanup")
SECONDS_PER_DAY = 86400.0
# The scheduled cleanup never removes a session closed less than this long ago, so a
# misconfigured schedule cannot eat this month's work.
SCHEDULE_MINIMUM_AGE_DAYS = 30.0


def select_expired(
    records: Sequence[ListedRecord],
    now: float,
    older_than_days: float | None,
    keep: int | None,
) -> list[ListedRecord]:
    """Closed sessions to delete: those closed more than `older_than_days` ago and not
    among the newest `keep` (either rule alone works too). Newest first is kept."""
    if older_than_days is None and keep is None:
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            "say what to clean up: older_than_days, keep, or both (see --dry-run first)",
        )
    closed = sorted(
        (r for r in records if r.summary.closed_at is not None),
        key=lambda r: r.summary.closed_at or 0.0,
        reverse=True,
    )
    protected = closed[:keep] if keep is not None else []
    cutoff = None if older_than_days is None else now - older_than_days * SECONDS_PER_DAY
    return [
        record for record in closed
        if record not in protected
        and (cutoff is None or (record.summary.closed_at or now) < cutoff)
    ]  # fmt: skip


async def cleanup(
    manager: SessionManager, older_than_days: float | None, keep: int | None, dry_run: bool
) -> CleanupResult:
    listed, _ = await manager.store.list()
    expired = select_expired(listed, time.time(), older_than_days, keep)
    deleted: list[str] = []
    if not dry_run:
        for record in expired:
            await manager.store.delete(record.summary.session_id)
            deleted.append(record.summary.session_id)
        if deleted:
            log.info(
                "sessions_expired", deleted=deleted, older_than_days=older_than_days, keep=keep
            )
    return CleanupResult(
        deleted=deleted if not dry_run else [r.summary.session_id for r in expired],
        dry_run=dry_run,
        freed_bytes=sum(r.size_bytes for r in expired),
        remaining=len([r for r in listed if r.summary.closed_at is not None]) - len(expired),
    )


class Housekeeper:
    """Background tasks: the cleanup schedule and the idle-session sweep."""

    def __init__(
        self,
        manager: SessionManager,
        *,
        cleanup_interval_s: float | None,
        cleanup_older_than_days: float | None,
        cleanup_keep: int | None,
        idle_ttl_s: float | None,
    ) -> None:
        self.manager = manager
        self.cleanup_interval_s = cleanup_interval_s
        self.cleanup_older_than_days = cleanup_older_than_days
        self.cleanup_keep = cleanup_keep
        self.idle_ttl_s = idle_ttl_s

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self.cleanup_interval_s and (self.cleanup_older_than_days or self.cleanup_keep):
                await self._scheduled_cleanup()  # once at start, before reporting ready
                nursery.start_soon(self._cleanup_loop)
            if self.idle_ttl_s:
                nursery.start_soon(self._idle_loop)
            task_status.started()

    async def _cleanup_loop(self) -> None:
        assert self.cleanup_interval_s is not None
        while True:
            await trio.sleep(self.cleanup_interval_s)
            await self._scheduled_cleanup()

    async def _scheduled_cleanup(self) -> None:
        older = max(self.cleanup_older_than_days or 0.0, SCHEDULE_MINIMUM_AGE_DAYS)
        try:
            await cleanup(self.manager, older, self.cleanup_keep, dry_run=False)
        except (RemoteProtocolError, OSError) as error:
            log.warning("scheduled_cleanup_failed", reason=str(error))

    async def _idle_loop(self) -> None:
        assert self.idle_ttl_s is not None
        check_every_s = min(60.0, self.idle_ttl_s / 4)
        while True:
            await trio.sleep(check_every_s)
            for session_id in self.manager.idle_sessions(self.idle_ttl_s):
                try:
                    await self.manager.close(session_id)
                    log.info(
                        "idle_session_closed", session_id=session_id, idle_ttl_s=self.idle_ttl_s
                    )
                except (RemoteProtocolError, OSError) as error:
                    log.warning("idle_close_failed", session_id=session_id, reason=str(error))
