"""`session.adopt`: an open session whose daemon died, brought into this daemon's
Blender from the shared store and recorded on from there.

1. Its lease is taken in the database (refused while another daemon holds it: leases
   expire LEASE_S after their daemon's last renewal), then its journal and
   checkpoints are copied into this data dir (shared.py).
2. The session is opened from that journal as after a crash (recovery.py), in this
   daemon's Blender; it takes no commands meanwhile.
3. Its scene is brought back as into a restarted Blender: its newest checkpoint, then
   every step since replayed (travel.py); a `restart` step records it, and commands
   go on from the next step. If it cannot be brought back, the session is detached
   (close it to save its record).
"""

from __future__ import annotations

import time

import structlog

from ..protocol import ErrorCode, RemoteProtocolError
from ..protocol.ops import AdoptResult
from ..store import SessionStore, parse_session_id
from .blender import Blenders
from .catalog import Catalog
from .lifecycle import Lifecycle
from .recovery import reopen
from .restore import replaced_under
from .travel import TimeTravel

log = structlog.get_logger("sessions")


class Adopter:
    def __init__(
        self,
        store: SessionStore,
        catalog: Catalog,
        blenders: Blenders,
        lifecycle: Lifecycle,
        travel: TimeTravel,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.blenders = blenders
        self.lifecycle = lifecycle
        self.travel = travel

    async def adopt(self, session_id: str, blender: str | None) -> AdoptResult:
        shared = self.catalog.shared
        if shared is None:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT,
                "adopting needs a shared store: start the daemon with --store "
                "postgresql://... (the one the session's daemon used)",
            )
        parse_session_id(session_id)
        if self.catalog.registry.get(session_id) is not None:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT, f"session {session_id} is already open in this daemon"
            )
        link = self.blenders.pick(blender)
        if not link.connected:
            raise link.unavailable_error()
        began = time.monotonic()
        notes = replaced_under(self.catalog.registry, link, "this adoption")
        await shared.take_over(session_id)
        session = await reopen(session_id, self.store, self.lifecycle, lambda info: link)
        shared.wake()  # its catalog row and lease, now
        info = link.info()
        if session.instance_id != info.instance_id:
            session.busy = "being adopted: its scene is being brought back"
            await self.travel.resume(session, info.instance_id, info.blender_version)
        result = AdoptResult(
            session_id=session_id,
            name=session.name,
            commands=session.command_count,
            steps=session.last_seq,
            resumed=session.detached is None,
            error=session.detached,
            duration_ms=round((time.monotonic() - began) * 1000, 3),
            blender=info,
            notes=notes,
        )
        log.warning("session_adopted", session_id=session_id, commands=result.commands,
                    resumed=result.resumed, duration_ms=result.duration_ms)  # fmt: skip
        return result
