"""Events across daemons (`--store postgresql://`): each daemon LISTENs on the shared
store's channel (pgstore.catalog.CHANNEL) and hands what the others announce to its own
watchers (`watch`, the web pages) as `shared_changed` events.

A busy daemon announces every journal commit (hundreds a second); what arrives within
one wait (WAIT_S) is passed on as one event per session and change, the newest.

The listening connection is used from one worker thread (psycopg has no trio
support); each wait returns within WAIT_S, so stopping never waits longer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import structlog
import trio

from ..events import SharedChanged
from ..pgstore.catalog import CHANNEL, conninfo

log = structlog.get_logger("shared")
WAIT_S = 0.2
MAX_NOTES = 1024  # read per wait, at most
RETRY_MAX_S = 30.0

Connection = psycopg.Connection[tuple[Any, ...]]


def _listen(url: str) -> Connection:
    conn = psycopg.connect(conninfo(url), autocommit=True)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


def _next(conn: Connection) -> list[str]:
    return [note.payload for note in conn.notifies(timeout=WAIT_S, stop_after=MAX_NOTES)]


def coalesce(payloads: list[str], own: str) -> list[SharedChanged]:
    """The other daemons' announcements, the newest per session and change."""
    newest: dict[tuple[str, str], SharedChanged] = {}
    for payload in payloads:
        try:
            note = json.loads(payload)
            event = SharedChanged(
                session_id=str(note["session_id"]),
                daemon=note.get("daemon"),
                change=str(note["change"]),
                line=note.get("line"),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("shared_note_unreadable", payload=payload[:200])
            continue
        if event.daemon != own:
            newest[(event.session_id, event.change)] = event
    return list(newest.values())


class FleetListener:
    def __init__(self, url: str, own: str, publish: Callable[[SharedChanged], None]) -> None:
        self.url = url
        self.own = own  # this daemon's holder name: its own announcements are skipped
        self.publish = publish
        self.listening = trio.Event()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                conn = await trio.to_thread.run_sync(_listen, self.url)
            except (psycopg.Error, OSError) as error:
                failures += 1
                wait = min(RETRY_MAX_S, 0.5 * 2 ** min(failures, 10))
                log.warning("shared_events_unreachable", reason=str(error).strip(), retry_s=wait)
                await trio.sleep(wait)
                continue
            failures = 0
            self.listening.set()
            try:
                while True:
                    # Abandoned on cancel (the daemon stopping): the wait ends by itself.
                    payloads = await trio.to_thread.run_sync(_next, conn, abandon_on_cancel=True)
                    for event in coalesce(payloads, self.own):
                        self.publish(event)
            except (psycopg.Error, OSError) as error:
                log.warning("shared_events_lost", reason=str(error).strip())
                await trio.to_thread.run_sync(conn.close)
