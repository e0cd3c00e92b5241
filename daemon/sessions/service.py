"""The session service: one method per control op, each handing the work to the part
that owns it, and the observer of every Blender link. The control port, the proxy and
(later) the web page call this; nothing in `sessions/` imports it back.

Parts: `Catalog` (finding sessions), `Lifecycle` (open, close), `CommandPath` (every
scene command), `Restorer`, `Housekeeper`, transfer (export, import), recovery (at
start-up), `TimeTravel`, `Checkpointer`.

Long (about 520 lines) because it is the facade: one short method per control op (about 25)
and the link observer's callbacks, each handing off at once.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import time
from collections.abc import Sequence

import msgspec
import structlog
import trio

from ..events import Broadcaster, SceneChanged
from ..protocol import (
    DECODE_ERRORS,
    ErrorCode,
    RemoteProtocolError,
    check_json,
)
from ..protocol.limits import MAX_DATA_VALUE_BYTES
from ..protocol.ops import (
    AdoptResult,
    BatchCommand,
    BatchResult,
    CheckpointResult,
    CleanupResult,
    CloseResult,
    CommandResult,
    DeleteResult,
    DiffResult,
    ExportResult,
    ImportResult,
    ListResult,
    OpenResult,
    PageInfo,
    RestorePath,
    RestoreResult,
    RewindResult,
    SessionSummary,
    SetDataResult,
    StateResult,
    StatsResult,
    ThumbnailResult,
    TimelineResult,
)
from ..protocol.scene import ObjectRecord, SceneEdited
from ..store import JournalBatch, SessionStore
from ..store.archive import DEFAULT_IMPORT_LIMITS, ImportLimits
from .adoption import Adopter
from .batch import run_batch
from .blender import BlenderLink, Blenders
from .catalog import DEFAULT_PAGE, Catalog
from .checkpoints import Checkpointer, CheckpointPolicy
from .command_path import CommandPath, Reply
from .history import closed_page, open_page, split
from .housekeeping import Housekeeper, cleanup
from .lifecycle import Lifecycle
from .recovery import quarantine_damaged_records, recover_open_sessions
from .registry import OpenSessions
from .replication import DEFAULT_BACKLOG_BYTES
from .restore import Restorer
from .session import Session
from .shared import LEASE_S, SharedSessions
from .snapshots import render_thumbnail
from .transfer import export, import_archive
from .travel import TimeTravel

log = structlog.get_logger("sessions")
# Commands held for a session while its journal is read back after a restart (each
# holds its params: up to 64 x 16 MiB in theory, a few KiB in practice).
MAX_PARKED_COMMANDS = 4096
_encoder = msgspec.json.Encoder()
_edited_decoder = msgspec.json.Decoder(SceneEdited)
_object_decoder = msgspec.json.Decoder(ObjectRecord)


class SessionService:
    def __init__(
        self,
        store: SessionStore,
        links: Sequence[BlenderLink],
        *,
        events: Broadcaster | None = None,
        blend_snapshots: bool = True,
        thumbnails: bool = True,
        import_limits: ImportLimits = DEFAULT_IMPORT_LIMITS,
        checkpoints: CheckpointPolicy | None = None,
        on_blender_restart: str = "resume",
        shared_store: str | None = None,
        shared_backlog_bytes: int = DEFAULT_BACKLOG_BYTES,
        shared_lease_s: float = LEASE_S,
    ) -> None:
        self.store = store
        self.blenders = Blenders(links)
        self.events = events or Broadcaster()
        self.registry = OpenSessions()
        self.catalog = Catalog(store, self.registry)
        if shared_store is not None:  # postgresql://...: sessions shared with other daemons
            shared = SharedSessions(
                shared_store,
                store,
                self.open_summaries,
                self.open_summary,
                shared_backlog_bytes,
                shared_lease_s,
                publish=self.events.publish,
            )
            shared.journals.on_taken_over = self._taken_over
            self.catalog.shared = shared
            store.on_saved = shared.saved
        self.checkpointer = Checkpointer(store, checkpoints)
        self.lifecycle = Lifecycle(
            store,
            self.catalog,
            self.blenders,
            self.events,
            checkpointer=self.checkpointer,
            blend_snapshots=blend_snapshots,
            thumbnails=thumbnails,
        )
        self.commands = CommandPath(
            self.events, store.storage_error, after_send=self.checkpointer.after_send
        )
        self.travel = TimeTravel(store, self.catalog, self.checkpointer)
        self.on_blender_restart = on_blender_restart
        self.restorer = Restorer(store, self.catalog, self.blenders, self.lifecycle, self.commands)
        self.adopter = Adopter(store, self.catalog, self.blenders, self.lifecycle, self.travel)
        self.import_limits = import_limits
        self.ready = trio.Event()  # set once start-up recovery is done
        self._nursery: trio.Nursery | None = None
        # Commands that came for a session still being recovered, in arrival order.
        self._parked: dict[str, builtins.list[tuple[str, msgspec.Raw, str | None, Reply]]] = {}
        # The proxy binds its clients to the newest open session, or opens one: one
        # binding at a time, so racing clients share a session instead of each opening one.
        self._binding = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the journals' tasks; serve at once, while the index is brought up to date
        and what a crash left open is recovered, in the background; then wait."""
        async with trio.open_nursery() as nursery:
            self.lifecycle.bind(nursery)
            self.checkpointer.bind(nursery)
            self._nursery = nursery
            self.catalog.note_recovering(await self.store.journal_heads())
            if self.catalog.shared is not None:
                await nursery.start(self.catalog.shared.run)
            task_status.started()
            await quarantine_damaged_records(self.store)
            self.catalog.index_ready.set()
            await recover_open_sessions(
                self.store, self.blenders, self.lifecycle, self.catalog.recovering, self._recovered
            )
            self.ready.set()
            await trio.sleep_forever()

    def housekeeper(
        self,
        *,
        cleanup_interval_s: float | None,
        cleanup_older_than_days: float | None,
        cleanup_keep: int | None,
        idle_ttl_s: float | None,
    ) -> Housekeeper:
        return Housekeeper(
            self.store,
            self.registry,
            self.close,
            cleanup_interval_s=cleanup_interval_s,
            cleanup_older_than_days=cleanup_older_than_days,
            cleanup_keep=cleanup_keep,
            idle_ttl_s=idle_ttl_s,
        )

    # --- ops ------------------------------------------------------------------------

    async def open(
        self, *, name: str | None = None, session_id: str | None = None, blender: str | None = None
    ) -> OpenResult:
        return await self.lifecycle.open(name=name, session_id=session_id, blender=blender)

    async def close(self, ref: str) -> CloseResult:
        return await self.lifecycle.close(ref)

    def submit_command(
        self, ref: str, type: str, params: msgspec.Raw, client_id: str | None, reply: Reply
    ) -> None:
        """A scene command for the open session `ref` names; `reply` gets exactly one
        answer. Never raises. A command for a session still being recovered waits for
        it, in order (up to MAX_PARKED_COMMANDS, then `busy`)."""
        if self.catalog.recovering:
            recovering = self.catalog.recovering_id(ref)
            if recovering is not None:
                parked = self._parked.setdefault(recovering, [])
                if len(parked) < MAX_PARKED_COMMANDS:
                    parked.append((type, params, client_id, reply))
                    return
        try:
            session = self.catalog.open_now(ref)
        except RemoteProtocolError as error:
            reply(error)
            return
        self.commands.submit(session, type, params, client_id, reply)

    def _recovered(self, session_id: str) -> None:
        """A session is back (or could not be): send what waited for it, in order (a
        session whose rewind the crash interrupted answers them `busy` until that
        rewind is finished)."""
        session = self.registry.get(session_id)
        if session is not None and session.interrupted_rewind is not None:
            link = session.link
            if link.connected and link.info().instance_id == session.instance_id:
                self._finish_interrupted(session)
        for type, params, client_id, reply in self._parked.pop(session_id, []):
            self.submit_command(session_id, type, params, client_id, reply)
        self.store.journals.flush()

    def _finish_interrupted(self, session: Session) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self.travel.finish_interrupted, session)

    async def command(
        self, ref: str, type: str, params: msgspec.Raw, client_id: str | None
    ) -> CommandResult:
        return await self.commands.run(self.catalog.open_now(ref), type, params, client_id)

    async def batch(
        self,
        ref: str,
        commands: builtins.list[BatchCommand],
        stop_on_error: bool,
        client_id: str | None,
    ) -> BatchResult:
        session = await self.catalog.open(ref)
        return await run_batch(
            self.commands, self.store.journals, session, commands, stop_on_error, client_id
        )

    async def state(self, ref: str) -> StateResult:
        session = await self.catalog.open(ref)
        scene = await session.read_scene()
        return StateResult(session_id=session.session_id, scene=msgspec.Raw(scene))

    async def list(
        self,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
        name_contains: str | None = None,
        status: str = "all",
    ) -> ListResult:
        return await self.catalog.list(limit, cursor, name_contains, status)

    async def search(self, text: str, status: str = "all", limit: int = DEFAULT_PAGE) -> ListResult:
        return await self.catalog.search(text, status, limit)

    async def stats(self) -> StatsResult:
        return await self.catalog.stats()

    async def show(self, ref: str, after_seq: int = 0, limit: int = 1000) -> bytes:
        """The record (PROTOCOL §3) with one page of its history: its steps after
        `after_seq`, and `page` saying where the next one starts. Open sessions are
        read from their journal (`status: open`)."""
        session_id = await self.catalog.resolve(ref)
        session = self.registry.get(session_id)
        if session is None:
            head = (await self.store.load_head(session_id)).data
            page = await closed_page(self.store, head, after_seq, limit)
            status = "closed"
        else:
            head = session.to_data()
            page = await open_page(session, after_seq, limit)
            status = "open"
        commands, timeline = split(page.steps)
        data = msgspec.structs.replace(head, commands=commands, timeline=timeline)
        info = PageInfo(
            after_seq=after_seq,
            next_after_seq=page.next_after_seq,
            last_seq=page.last_seq,
            steps=len(page.steps),
        )
        shown = {
            "format": 1,
            "session_id": session_id,
            "status": status,
            "data": data,
            "page": info,
        }
        # A page is up to ~4 MiB: encoded off the event loop, as it was read.
        return await trio.to_thread.run_sync(msgspec.json.encode, shown)

    async def delete(self, ref: str) -> DeleteResult:
        session_id = await self.catalog.resolve(ref)
        if session_id in self.registry:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT,
                f"session {session_id} is open; close it first "
                f"(run: blender-session close {session_id})",
            )
        try:
            removed = await self.store.delete(session_id)
        except OSError as error:
            raise self.store.storage_error(error, "the session may be partly deleted") from None
        log.info("session_deleted", session_id=session_id, removed=removed)
        return DeleteResult(session_id=session_id, removed=removed)

    async def restore(
        self,
        ref: str,
        name: str | None,
        client_id: str | None,
        path: RestorePath = "auto",
        blender: str | None = None,
        at_seq: int | None = None,
        dry_run: bool = False,
    ) -> RestoreResult:
        return await self.restorer.restore(ref, name, path, client_id, blender, at_seq, dry_run)

    async def adopt(self, session_id: str, blender: str | None = None) -> AdoptResult:
        return await self.adopter.adopt(session_id, blender)

    # --- time travel ----------------------------------------------------------------

    async def checkpoint(self, ref: str, label: str | None = None) -> CheckpointResult:
        return await self.travel.checkpoint(ref, label)

    async def timeline(self, ref: str, after_seq: int = 0, limit: int = 200) -> TimelineResult:
        return await self.travel.timeline(ref, after_seq, limit)

    async def diff(
        self,
        ref: str,
        from_seq: int | None = None,
        to_seq: int | None = None,
        other: str | None = None,
    ) -> DiffResult:
        return await self.travel.diff(ref, from_seq, to_seq, other)

    async def rewind(self, ref: str, to_seq: int, client_id: str | None) -> RewindResult:
        return await self.travel.rewind(ref, to_seq, client_id)

    async def undo(self, ref: str, steps: int, client_id: str | None) -> RewindResult:
        return await self.travel.undo(ref, steps, client_id)

    async def thumbnail(self, ref: str) -> ThumbnailResult:
        """A PNG of the scene: rendered now (and stored) for an open session, the stored
        one for a closed session."""
        session_id = await self.catalog.resolve(ref)
        session = self.registry.get(session_id)
        if session is not None:
            if not session.link.connected:
                raise session.link.unavailable_error()
            try:
                png = await render_thumbnail(session.link)
            except DECODE_ERRORS as error:
                raise RemoteProtocolError(
                    ErrorCode.INTERNAL, f"Blender's thumbnail cannot be read: {error}"
                ) from None
            try:
                await self.store.write_thumbnail(session_id, png)
            except OSError as error:
                raise self.store.storage_error(error, "the thumbnail was not kept") from None
        else:
            if not self.store.exists(session_id):
                raise RemoteProtocolError(ErrorCode.NOT_FOUND, f"no session {session_id!r}")
            await self.lifecycle.thumbnail_written(session_id)
            png = await self.store.read_thumbnail(session_id)
        return ThumbnailResult(
            session_id=session_id, png_base64=base64.b64encode(png).decode(), bytes=len(png)
        )

    async def set_data(self, ref: str, key: str, value: msgspec.Raw) -> SetDataResult:
        """Attach a JSON value to an open session under `key` (null removes it)."""
        session = await self.catalog.open(ref)
        if len(value) > MAX_DATA_VALUE_BYTES:
            raise RemoteProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"value for {key!r} is {len(value)} bytes; the limit is {MAX_DATA_VALUE_BYTES}",
            )
        check_json(value, f"the value for {key!r}")
        try:
            session.set_data(key, value)
            await session.journal.durable()
        except OSError as error:
            raise self.store.storage_error(error, f"{key!r} was not set") from None
        return SetDataResult(session_id=session.session_id, key=key, keys=sorted(session.data))

    async def cleanup(
        self, older_than_days: float | None, keep: int | None, dry_run: bool, delete_all: bool
    ) -> CleanupResult:
        return await cleanup(self.store, older_than_days, keep, dry_run, delete_all)

    async def export(self, refs: builtins.list[str], everything: bool, path: str) -> ExportResult:
        return await export(self.store, self.catalog, refs, everything, path)

    async def import_archive(self, path: str, overwrite: bool) -> ImportResult:
        return await import_archive(self.store, self.catalog, path, overwrite, self.import_limits)

    def open_summary(self, session_id: str) -> SessionSummary | None:
        session = self.registry.get(session_id)
        return None if session is None else self.catalog.summary(session)

    def open_summaries(self) -> builtins.list[SessionSummary]:
        return [self.catalog.summary(session) for session in self.registry]

    def _taken_over(self, session_id: str, why: str) -> None:
        session = self.registry.get(session_id)
        if session is not None:
            session.taken_over = why

    # --- the proxy's session --------------------------------------------------------

    async def bound_session(self) -> Session:
        """The session bound to this daemon's Blender: the newest open one that takes
        commands, or a new one (the proxy's clients never open sessions themselves)."""
        async with self._binding:
            session = self.registry.newest()
            if session is None:
                opened = await self.open(name=f"proxy {time.strftime('%Y-%m-%d %H:%M:%S')}")
                session = self.registry.get(opened.session_id)
                assert session is not None  # opened just now, under the binding lock
            return session

    def record_housekeeping(
        self, session: Session, type: str, params: msgspec.Raw, result: bytes, client_id: str
    ) -> None:
        """Record a probe the proxy answered itself, tagged as housekeeping."""
        try:
            session.record_housekeeping(type, params, result, client_id)
        except OSError as error:
            raise self.store.storage_error(error, "the probe was not recorded") from None
        log.info("housekeeping_answered", session_id=session.session_id, type=type)

    # --- LinkObserver ---------------------------------------------------------------

    def link_changed(self, link: BlenderLink) -> None:
        self.events.publish(link.info())

    def scene_changed(self, link: BlenderLink, data: msgspec.Raw, missed: int) -> None:
        for session in self.registry.bound_to(link):
            try:
                session.tracker.track_scene_event(data)
            except DECODE_ERRORS as error:
                log.warning("scene_event_unreadable", endpoint=link.endpoint, reason=str(error))
                return
        self.events.publish(SceneChanged(blender=link.endpoint, data=data, missed=missed))

    def scene_edited(self, link: BlenderLink, data: msgspec.Raw) -> None:
        """A change made beside the daemon: a step (`edit`) of every session that
        records this Blender's scene, and a checkpoint once such edits pause."""
        try:
            edited = _edited_decoder.decode(data)
            for record in edited.objects:
                _object_decoder.decode(record)
        except DECODE_ERRORS as error:
            log.warning("scene_edit_unreadable", endpoint=link.endpoint, reason=str(error))
            return
        for session in self.registry.bound_to(link):
            if session.closing or session.detached is not None:
                continue
            try:
                session.add_edit(edited.source, edited.objects, edited.removed)
            except OSError as error:
                log.error("edit_not_journaled", session_id=session.session_id, reason=str(error))
                continue
            self.checkpointer.edited(session)
            log.info("scene_edited", session_id=session.session_id, source=edited.source,
                     changed=len(edited.objects), removed=len(edited.removed))  # fmt: skip

    def handling_answers(self, link: BlenderLink) -> contextlib.AbstractContextManager[None]:
        """The link's reader holds the journals' batch while it delivers what one read
        brought in: the outcomes of a burst of answers go in with one write each."""
        return self.store.journals.held()

    @property
    def journals(self) -> JournalBatch:
        """Held by readers while they handle a read (see store/journal.py)."""
        return self.store.journals

    def blender_connected(self, link: BlenderLink, previous_instance: str) -> None:
        """A Blender said hello. A session recorded in a different Blender instance is
        brought back into it (`resume`, the default: its scene rewound to its last step
        before anything more is recorded), or detached (`mark`, and any other session
        bound to the same Blender): its scene is not this Blender's."""
        instance = link.info().instance_id
        if not instance:
            return  # an addon that does not say which Blender it is
        restarted = [
            session for session in self.registry.bound_to(link)
            if session.instance_id and session.instance_id != instance
            and session.detached is None and not session.closing
        ]  # fmt: skip
        for session in self.registry.bound_to(link):
            if not session.instance_id:
                session.adopt_instance(instance)
            if session.interrupted_rewind is not None and session.instance_id == instance:
                self._finish_interrupted(session)  # the same Blender, back
        if not restarted:
            return
        resumed = restarted[-1] if self.on_blender_restart == "resume" else None
        version = link.info().blender_version
        for session in restarted:
            if session is resumed and self._nursery is not None:
                session.busy = "bringing its scene back into a restarted Blender"
                self._nursery.start_soon(self.travel.resume, session, instance, version)
                continue
            try:
                session.mark_restarted(instance, version)
            except OSError as error:
                log.error("restart_not_journaled", session_id=session.session_id,
                          reason=str(error))  # fmt: skip
        log.error(
            "blender_restarted",
            endpoint=link.endpoint,
            previous_instance=previous_instance,
            instance=instance,
            sessions=[session.session_id for session in restarted],
            resumed=resumed.session_id if resumed else None,
        )
