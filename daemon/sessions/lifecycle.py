"""Opening and closing sessions.

Open: the journal's first line is durable before the session exists. Close: nothing
new is accepted, the commands in flight finish, the final snapshots are taken (not
from a Blender that restarted under the session: its scene is not the session's),
the record is saved atomically, and only then is the journal closed and removed. A
close that fails at any step leaves the session open and fully working.
"""

from __future__ import annotations

import time

import msgspec
import structlog
import trio

from ..events import Broadcaster, SessionClosed, SessionOpened
from ..protocol import DECODE_ERRORS, ErrorCode, Outcome, RemoteProtocolError
from ..protocol.messages import NULL, LinkSuccess
from ..protocol.ops import CloseResult, OpenResult
from ..store import (
    JournalOpen,
    JournalWriter,
    SessionData,
    SessionState,
    SessionStore,
    SnapshotInfo,
    check_session_name,
    new_session_id,
    parse_session_id,
)
from .blender import BlenderLink, Blenders
from .catalog import Catalog
from .checkpoints import CLOSE, OPEN, Checkpointer
from .history import write_closed_record
from .session import Session, blender_info
from .snapshots import THUMBNAIL_PARAMS, take_snapshots, thumbnail_png

log = structlog.get_logger("sessions")


class Lifecycle:
    def __init__(
        self,
        store: SessionStore,
        catalog: Catalog,
        blenders: Blenders,
        events: Broadcaster,
        *,
        checkpointer: Checkpointer,
        blend_snapshots: bool = True,
        thumbnails: bool = True,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.registry = catalog.registry
        self.blenders = blenders
        self.events = events
        self.checkpointer = checkpointer
        self.blend_snapshots = blend_snapshots
        self.thumbnails = thumbnails
        self._nursery: trio.Nursery | None = None
        # Thumbnails rendered after their session closed, not yet written.
        self.pending_thumbnails: dict[str, trio.Event] = {}
        # Opening checks that a name is free, then opens: one open at a time, so two
        # clients racing for a name (or the proxy's binding) cannot both get it.
        self._open_lock = trio.Lock()

    def bind(self, nursery: trio.Nursery) -> None:
        """Where journals' fsync tasks live (the service's nursery)."""
        self._nursery = nursery

    async def start_journal(self, journal: JournalWriter) -> None:
        """Its fsync task, and its copy in the shared store when there is one."""
        if self._nursery is None:
            raise RuntimeError("the session service is not running")
        await self._nursery.start(journal.run)
        if self.catalog.shared is not None:
            self.catalog.shared.journals.attach(journal.path.stem, journal)

    # --- open -----------------------------------------------------------------------

    async def open(
        self,
        *,
        name: str | None = None,
        session_id: str | None = None,
        restored_from: str | None = None,
        data: dict[str, msgspec.Raw] | None = None,
        blender: str | None = None,
        first_checkpoint: bool = True,
    ) -> OpenResult:
        """Open a session. Its first checkpoint (step 0: the scene as it opens, what
        every later step can be brought back from) goes to Blender before any command;
        `first_checkpoint` False: the caller takes one itself (a restore at a step)."""
        link = self.blenders.pick(blender)
        if name is not None:
            check_session_name(name)
        async with self._open_lock:
            if session_id is not None:
                parse_session_id(session_id)
                existing = self.registry.get(session_id)
                if existing is not None:
                    return self.open_result(existing, created=False)
                if self.store.exists(session_id) or self.store.journal_exists(session_id):
                    raise RemoteProtocolError(
                        ErrorCode.CONFLICT,
                        f"session {session_id} was already closed; restore it instead "
                        f"(run: blender-session restore {session_id})",
                    )
            if name is not None:
                await self.catalog.check_name_free(name)
            session = await self._create(
                session_id or new_session_id(), name, link, restored_from, data or {}
            )
            if first_checkpoint and self.checkpointer.possible(session):
                await self.store.prepare_checkpoint_dir(session.session_id)
                self.checkpointer.request(session, OPEN)
        await self.attach_latest(link)
        log.info(
            "session_opened",
            session_id=session.session_id,
            name=name,
            restored_from=restored_from,
            blender=link.endpoint,
        )
        self.events.publish(SessionOpened(session_id=session.session_id, name=name))
        return self.open_result(session, created=True)

    async def _create(
        self,
        session_id: str,
        name: str | None,
        link: BlenderLink,
        restored_from: str | None,
        data: dict[str, msgspec.Raw],
    ) -> Session:
        now = time.time()
        opened = SessionData(
            session_id=session_id,
            name=name,
            created_at=now,
            last_activity=now,
            closed_at=None,
            blender=blender_info(link, link.info().instance_id),
            state=SessionState(scene=NULL),
            command_count=0,
            restored_from=restored_from,
            snapshot=None,
            commands=[],
            data=data,
        )
        try:
            journal = await self.store.open_journal(session_id)
        except OSError as error:
            raise self.store.storage_error(error, "no session was opened") from None
        await self.start_journal(journal)
        try:
            journal.write(JournalOpen(session=opened))
            await journal.durable()
        except OSError as error:
            await journal.close()
            await self.store.remove_journal(session_id)
            raise self.store.storage_error(error, "no session was opened") from None
        session = Session(opened, link, journal)
        self.registry.add(session)
        return session

    def open_result(self, session: Session, *, created: bool) -> OpenResult:
        return OpenResult(
            session_id=session.session_id,
            name=session.name,
            created=created,
            restored_from=session.restored_from,
            blender=session.link.info(),
        )

    async def attach_latest(self, link: BlenderLink) -> None:
        """Show the newest open session bound to `link` in that Blender's panel (or none)."""
        bound = self.registry.bound_to(link)
        latest = bound[-1] if bound else None
        try:
            if latest is None:
                await link.attach(None)
            else:
                await link.attach(latest.session_id, latest.name)
        except RemoteProtocolError as error:
            log.info("attach_deferred", endpoint=link.endpoint, reason=error.message)

    # --- close ----------------------------------------------------------------------

    async def close(self, ref: str) -> CloseResult:
        session = await self.catalog.open(ref)
        if session.closing:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT, f"session {session.session_id} is closing"
            )
        session.closing = True
        try:
            await session.wait_idle()
            fresh = False
            snapshot = session.snapshot
            render_later = False
            if session.detached is None and session.link.connected:
                final = await self._final_checkpoint(session)
                if final is not None:
                    snapshot, fresh, render_later = final, True, self.thumbnails
                else:
                    fresh = await self._final_state(session)
                    snapshot = (
                        await take_snapshots(
                            session.link,
                            self.store,
                            session.session_id,
                            blend=self.blend_snapshots,
                            thumbnail=self.thumbnails,
                        )
                        or snapshot
                    )
            head = session.to_data(closed_at=time.time(), snapshot=snapshot)
            session.journal.flush()  # every line in the file (or kept in unjournaled)
            try:
                await trio.to_thread.run_sync(
                    write_closed_record,
                    self.store,
                    head,
                    session.journal.path,
                    session.steps,
                    dict(session.unjournaled),
                )
                await self.store.note_saved(session.session_id)
            except OSError as error:
                raise self.store.storage_error(
                    error, "the session stays open and nothing recorded is lost"
                ) from None
        except BaseException:
            session.closing = False
            raise
        session.snapshot = snapshot
        self.registry.remove(session.session_id)
        self.checkpointer.forget(session)
        await session.journal.close()
        try:
            await self.store.remove_journal(session.session_id)
        except OSError as error:  # the record is saved; the next start removes it
            log.warning("journal_not_removed", session_id=session.session_id, reason=str(error))
        if not session.checkpoints:
            await self.store.drop_empty_checkpoint_dir(session.session_id)
        if render_later and self._nursery is not None:
            await self._nursery.start(self._thumbnail_after_close, session)
        await self.attach_latest(session.link)
        path = self.store.path_for(session.session_id)
        log.info(
            "session_closed",
            session_id=session.session_id,
            commands=session.command_count,
            path=str(path),
            snapshot_fresh=fresh,
        )
        self.events.publish(SessionClosed(session_id=session.session_id, path=str(path)))
        return CloseResult(
            session_id=session.session_id,
            path=str(path),
            command_count=session.command_count,
            snapshot_fresh=fresh,
        )

    async def _final_checkpoint(self, session: Session) -> SnapshotInfo | None:
        """Close's snapshot from a checkpoint of the last step (taken now unless there
        is one): its .blend copied beside the record, its scene as the record's state.
        None when Blender cannot take one (then close reads the scene itself)."""
        if not self.checkpointer.possible(session):
            return None
        try:
            checkpoint = await self.checkpointer.take(session, CLOSE)
            session.tracker.track_state(
                await self.store.read_checkpoint_state(session.session_id, checkpoint.seq)
            )
            if self.blend_snapshots:
                await self.store.copy_checkpoint(
                    session.session_id,
                    checkpoint.seq,
                    self.store.path_for(session.session_id, ".blend"),
                )
        except (RemoteProtocolError, OSError, *DECODE_ERRORS) as error:
            log.warning("final_checkpoint_failed", session_id=session.session_id, reason=str(error))
            return None
        return SnapshotInfo(
            blend=f"{session.session_id}.blend" if self.blend_snapshots else None,
            blender_version=session.link.info().blender_version,
            thumbnail=f"{session.session_id}.png" if self.thumbnails else None,
        )

    async def _thumbnail_after_close(
        self, session: Session, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The thumbnail of a closed session, rendered after close answered (at 10,000
        objects the render is most of what closing took). Its request goes to Blender
        before close answers, right behind the final checkpoint, so it shows the same
        scene; the thumbnail op waits for it (`thumbnail_written`)."""
        session_id = session.session_id
        answered = trio.Event()
        outcomes: list[Outcome] = []

        def deliver(outcome: Outcome) -> None:
            outcomes.append(outcome)
            answered.set()

        written = self.pending_thumbnails[session_id] = trio.Event()
        try:
            try:
                session.link.submit("render_thumbnail", THUMBNAIL_PARAMS, deliver)
            except RemoteProtocolError as error:
                log.warning("thumbnail_failed", session_id=session_id, reason=error.message)
                return
            finally:
                task_status.started()
            await answered.wait()
            (outcome,) = outcomes
            if not isinstance(outcome, LinkSuccess):
                reason = session.link.error_for("render_thumbnail", outcome).message
                log.warning("thumbnail_failed", session_id=session_id, reason=reason)
                return
            try:
                await self.store.write_thumbnail(session_id, thumbnail_png(outcome.result))
                await self.store.note_saved(session_id)
            except (OSError, ValueError, *DECODE_ERRORS) as error:
                log.warning("thumbnail_failed", session_id=session_id, reason=str(error))
        finally:
            del self.pending_thumbnails[session_id]
            written.set()

    async def thumbnail_written(self, session_id: str) -> None:
        """Returns once a thumbnail rendered after close is on disk (or failed)."""
        pending = self.pending_thumbnails.get(session_id)
        if pending is not None:
            await pending.wait()

    async def _final_state(self, session: Session) -> bool:
        try:
            await session.read_scene()
        except (RemoteProtocolError, *DECODE_ERRORS) as error:
            log.warning("final_snapshot_failed", session_id=session.session_id, reason=str(error))
            return False
        return True
