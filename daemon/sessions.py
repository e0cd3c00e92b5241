"""The session manager: opens, records, closes, restores sessions. It owns the open
sessions and their journal writers; it talks to Blender only through `AddonLink` and
to the disk only through `SessionStore`. No sockets here."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import msgspec
import structlog
import trio

from . import __version__
from .cleanup import cleanup as cleanup_sessions
from .link import AddonLink
from .link.addon import Outcome
from .protocol import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from .protocol.commands import check_command
from .protocol.messages import (
    ApplyStateParams,
    ApplyStateResult,
    ErrorBody,
    LinkFailure,
)
from .protocol.ops import (
    BlenderLinkInfo,
    CleanupResult,
    CloseResult,
    CommandResult,
    DamagedEntry,
    DeleteResult,
    ExportResult,
    ImportResult,
    ListResult,
    OpenResult,
    RestorePath,
    RestoreResult,
    SessionSummary,
    SetDataResult,
    StateResult,
    StatsResult,
    StatusResult,
    ThumbnailResult,
)
from .restore import restore as restore_session
from .session import OPAQUE_COMMANDS, Session, new_session_data
from .snapshots import session_thumbnail, take_snapshots
from .startup import quarantine_damaged_records, recover_open_sessions
from .store import (
    CommandRecord,
    JournalData,
    JournalDone,
    JournalOpen,
    JournalStart,
    SessionStore,
    check_session_name,
    is_session_id,
    new_session_id,
    parse_session_id,
    replay_journal,
    storage_error,
)
from .transfer import export as export_archive
from .transfer import import_archive
from .watch import Broadcaster

log = structlog.get_logger("sessions")
# Free-form values are for notes and small structured data, not assets: 1 MiB each.
MAX_DATA_VALUE_BYTES = 1024 * 1024
_encoder = msgspec.json.Encoder()
_apply_state_decoder = msgspec.json.Decoder(ApplyStateParams)
_apply_result_decoder = msgspec.json.Decoder(ApplyStateResult)


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        link: AddonLink,
        *,
        extra_links: Sequence[AddonLink] = (),
        control_endpoint: str = "",
        blend_snapshots: bool = True,
        thumbnails: bool = True,
    ) -> None:
        self.blend_snapshots = blend_snapshots
        self.thumbnails = thumbnails
        self.store = store
        self.link = link  # the default Blender: sessions go here unless told otherwise
        self.links = {item.endpoint: item for item in (link, *extra_links)}
        self.control_endpoint = control_endpoint
        self.proxy_endpoint: str | None = None
        self.events = Broadcaster()
        self._open: dict[str, Session] = {}
        self._nursery: trio.Nursery | None = None
        self._started_at = trio.current_time()

    # --- lifetime -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the journal writers; recover sessions left open by a crash; then wait."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await quarantine_damaged_records(self)
            await recover_open_sessions(self)
            task_status.started()
            await trio.sleep_forever()

    def adopt(self, session: Session) -> None:
        """Take in a session rebuilt at start-up (startup.py)."""
        self._open[session.session_id] = session

    def nursery(self) -> trio.Nursery:
        return self._nursery_or_fail()

    def _nursery_or_fail(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("SessionManager.run() is not running")
        return self._nursery

    # --- resolving references -------------------------------------------------------

    async def resolve(self, ref: str) -> str:
        """A session id from an id or a unique name. Raises not_found / invalid_params."""
        if is_session_id(ref):
            return ref
        if not ref or len(ref) > 200 or not ref.isprintable() or "/" in ref or "\\" in ref:
            parse_session_id(ref)  # raises invalid_params with the id format
        matches = {s.session_id for s in self._open.values() if s.name == ref}
        listed, _ = await self.store.list()
        matches |= {item.summary.session_id for item in listed if item.summary.name == ref}
        if len(matches) == 1:
            return matches.pop()
        if not matches:
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND,
                f"no session with id or name {ref!r} (run: blender-session list)",
            )
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"name {ref!r} is shared by sessions {sorted(matches)}; use one of the ids",
        )

    async def _open_session(self, ref: str) -> Session:
        session_id = await self.resolve(ref)
        session = self._open.get(session_id)
        if session is None:
            if self.store.exists(session_id):
                raise RemoteProtocolError(
                    ErrorCode.CONFLICT,
                    f"session {session_id} is closed; restore it to work on it again "
                    f"(run: blender-session restore {session_id})",
                )
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND, f"no session {session_id!r} (run: blender-session list)"
            )
        if session.closing:
            raise RemoteProtocolError(ErrorCode.CONFLICT, f"session {session_id} is closing")
        return session

    # --- ops ------------------------------------------------------------------------

    async def open(
        self,
        *,
        name: str | None = None,
        session_id: str | None = None,
        restored_from: str | None = None,
        data: dict[str, msgspec.Raw] | None = None,
        blender: str | None = None,
    ) -> OpenResult:
        link = self.link_for(blender)
        if name is not None:
            check_session_name(name)
        if session_id is not None:
            parse_session_id(session_id)
            existing = self._open.get(session_id)
            if existing is not None:
                return self._open_result(existing, created=False)
            if self.store.exists(session_id):
                raise RemoteProtocolError(
                    ErrorCode.CONFLICT,
                    f"session {session_id} was already closed; restore it instead "
                    f"(run: blender-session restore {session_id})",
                )
        if name is not None:
            await self._check_name_free(name)
        session_id = session_id or new_session_id()
        opened = new_session_data(session_id, name, link, restored_from)
        opened = msgspec.structs.replace(opened, data=dict(data or {}))
        journal = await self.store.open_journal(session_id)
        await self._nursery_or_fail().start(journal.run)
        try:
            await journal.append(JournalOpen(session=opened))
        except OSError as error:
            await journal.close()
            await self.store.remove_journal(session_id)
            raise storage_error(error) from None
        session = Session(opened, link, journal)
        self._open[session_id] = session
        await self._attach_latest(link)
        log.info("session_opened", session_id=session_id, name=name, restored_from=restored_from)
        self.events.publish("session_opened", {"session_id": session_id, "name": name})
        return self._open_result(session, created=True)

    async def _check_name_free(self, name: str) -> None:
        try:
            taken = await self.resolve(name)
        except RemoteProtocolError:
            return
        raise RemoteProtocolError(
            ErrorCode.CONFLICT, f"session name {name!r} is taken by {taken}; choose another"
        )

    async def _attach_latest(self, link: AddonLink) -> None:
        """Show the newest open session bound to `link` in that Blender's panel (or none)."""
        bound = [session for session in self._open.values() if session.link is link]
        latest = bound[-1] if bound else None
        try:
            if latest is None:
                await link.attach(None)
            else:
                await link.attach(latest.session_id, latest.name)
        except RemoteProtocolError as error:
            log.info("attach_deferred", endpoint=link.endpoint, reason=error.message)

    def link_for(self, blender: str | None) -> AddonLink:
        """The link to a Blender named as `host:port` or `port`; None: the default."""
        if blender is None:
            return self.link
        for endpoint, link in self.links.items():
            if blender in (endpoint, str(link.config.port)):
                return link
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"no Blender {blender!r} is configured; this daemon knows {sorted(self.links)} "
            "(add one with another --addon-port)",
        )

    def _open_result(self, session: Session, *, created: bool) -> OpenResult:
        return OpenResult(
            session_id=session.session_id,
            name=session.name,
            created=created,
            restored_from=session.restored_from,
            blender=self.link_info(session.link),
        )

    async def command(
        self, ref: str, type: str, params: msgspec.Raw, client_id: str | None
    ) -> CommandResult:
        """Forward one scene command to Blender and record it.

        The start line is journaled before the command leaves, the outcome after it
        returns; the caller is answered only once both are in the journal.
        """
        session = await self._open_session(ref)
        start = self._begin_command(session, type, params, client_id)
        try:
            await self._journal(session, start)
            # Once the command leaves, its outcome is recorded even if our caller goes
            # away meanwhile. Bounded: the link answers every request by its timeout,
            # and fails them all at once when it stops.
            with trio.CancelScope(shield=True):
                began = trio.current_time()
                try:
                    result, error = await session.link.request(type, bytes(start.params)), None
                except RemoteProtocolError as failure:
                    result, error = b"null", failure
                if error is None and type in OPAQUE_COMMANDS:
                    await self._track_opaque(session, type)
                command, done = self._outcome(session, start, began, result, error)
                try:
                    await self._journal(session, done)
                    journal_error = None
                except RemoteProtocolError as failure:
                    journal_error = failure
        finally:
            session.end()
        outcome = self._settle(session, command, error, journal_error)
        if isinstance(outcome, RemoteProtocolError):
            raise outcome
        return outcome

    def command_now(
        self,
        session_id: str,
        type: str,
        params: msgspec.Raw,
        client_id: str | None,
        reply: Callable[[CommandResult | RemoteProtocolError], None],
    ) -> bool:
        """The fast path for pipelined commands: journal the start and send the command
        without a task or a wait; `reply(outcome)` is called once the outcome is
        journaled. Returns False, having done nothing, when the command needs the async
        path (`command`): a name instead of an id, a session not open here, a command
        whose effect must be read back from Blender, or a journal that fsyncs.
        Raises RemoteProtocolError for a command that is refused before it is sent.
        """
        session = self._open.get(session_id)
        if session is None or session.closing or type in OPAQUE_COMMANDS:
            return False
        if session.journal.fsync:
            return False
        start = self._begin_command(session, type, params, client_id)
        try:
            self._journal_now(session, start)
        except RemoteProtocolError:
            session.end()
            raise
        began = trio.current_time()

        def deliver(outcome: Outcome) -> None:
            try:
                result, error = session.link.result_of(type, outcome), None
            except RemoteProtocolError as failure:
                result, error = b"null", failure
            command, done = self._outcome(session, start, began, result, error)
            try:
                self._journal_now(session, done)
                journal_error = None
            except RemoteProtocolError as failure:
                journal_error = failure
            session.end()
            reply(self._settle(session, command, error, journal_error))

        try:
            session.link.submit(type, bytes(start.params), deliver)
        except RemoteProtocolError as error:
            deliver(LinkFailure(code=error.code.value, message=error.message))
        return True

    def _begin_command(
        self, session: Session, type: str, params: msgspec.Raw, client_id: str | None
    ) -> JournalStart:
        """Check a command and give it a seq; the session counts it in flight from here."""
        checked_params = check_command(type, params, session.link.snapshot.commands)
        if not session.link.connected:
            raise session.link.unavailable_error()
        session.begin()
        return JournalStart(
            seq=session.take_seq(),
            type=type,
            params=checked_params,
            started_at=time.time(),
            client_id=client_id,
        )

    def _outcome(
        self,
        session: Session,
        start: JournalStart,
        began: float,
        result: bytes,
        error: RemoteProtocolError | None,
    ) -> tuple[CommandRecord, JournalDone]:
        """Track and record what Blender answered; the journal line that says so."""
        duration_ms = round((trio.current_time() - began) * 1000, 3)
        if error is None:
            self._track(session, start.type, start.params, result)
        status: Literal["success", "error"] = "success" if error is None else "error"
        command = CommandRecord(
            seq=start.seq,
            type=start.type,
            params=start.params,
            status=status,
            started_at=start.started_at,
            duration_ms=duration_ms,
            client_id=start.client_id,
            result=msgspec.Raw(result),
            error=None
            if error is None
            else ErrorBody(code=error.code.value, message=error.message),
        )
        session.record(command)
        done = JournalDone(
            seq=start.seq,
            status=status,
            duration_ms=duration_ms,
            result=command.result,
            error=command.error,
            # Recovery re-tracks the object list from each result; only a command
            # whose effect is not in its result carries the state it left.
            state=session.journal_state() if start.type in OPAQUE_COMMANDS else None,
        )
        return command, done

    def _settle(
        self,
        session: Session,
        command: CommandRecord,
        error: RemoteProtocolError | None,
        journal_error: RemoteProtocolError | None,
    ) -> CommandResult | RemoteProtocolError:
        """What the client gets for a recorded command: its result or its error."""
        if journal_error is not None:
            # The command ran in Blender: its outcome stays in memory and the record
            # gets it at close, once the disk takes writes again.
            session.unjournaled[command.seq] = command
            log.error(
                "journal_write_failed",
                session_id=session.session_id,
                seq=command.seq,
                reason=journal_error.message,
            )
            self.events.publish(
                "storage_failed",
                {
                    "session_id": session.session_id,
                    "seq": command.seq,
                    "message": journal_error.message,
                },
            )
        log.info(
            "command_done",
            session_id=session.session_id,
            client_id=command.client_id,
            seq=command.seq,
            type=command.type,
            status=command.status,
            duration_ms=command.duration_ms,
        )
        if self.events.subscribed:
            self.events.publish(
                "command",
                {
                    "session_id": session.session_id,
                    "seq": command.seq,
                    "type": command.type,
                    "status": command.status,
                    "duration_ms": command.duration_ms,
                },
            )
        if error is not None:
            return error
        return CommandResult(
            session_id=session.session_id,
            seq=command.seq,
            type=command.type,
            status="success",
            duration_ms=command.duration_ms or 0.0,
            result=command.result,
        )

    async def _journal(
        self, session: Session, line: JournalStart | JournalDone | JournalData
    ) -> None:
        try:
            await session.journal.append(line)
        except OSError as error:
            raise storage_error(error) from None

    def _journal_now(self, session: Session, line: JournalStart | JournalDone) -> None:
        try:
            session.journal.append_now(line)
        except OSError as error:
            raise storage_error(error) from None

    def _track(self, session: Session, type: str, params: msgspec.Raw, result: bytes) -> None:
        try:
            session.track(type, params, result)
        except DECODE_ERRORS as error:
            log.warning(
                "state_tracking_failed",
                session_id=session.session_id,
                type=type,
                reason=str(error),
            )

    async def _track_opaque(self, session: Session, type: str) -> None:
        """After a command whose effect is not in its result, read the scene back."""
        try:
            session.track_scene_info(await session.link.request("get_scene_info"))
        except (*DECODE_ERRORS, RemoteProtocolError) as error:
            log.warning(
                "state_tracking_failed",
                session_id=session.session_id,
                type=type,
                reason=str(error),
            )

    async def bound_session_id(self) -> str:
        """The session bound to this daemon's Blender: the newest open one, or a new
        session opened for it (the proxy's clients never open sessions themselves)."""
        open_ids = [sid for sid, session in self._open.items() if not session.closing]
        if open_ids:
            return open_ids[-1]
        opened = await self.open(name=f"proxy {time.strftime('%Y-%m-%d %H:%M:%S')}")
        return opened.session_id

    async def record_housekeeping(
        self, ref: str, type: str, params: msgspec.Raw, result: bytes, client_id: str | None
    ) -> None:
        """Record a probe the proxy answered itself, tagged as housekeeping."""
        session = await self._open_session(ref)
        seq = session.take_seq()
        started_at = time.time()
        await self._journal(
            session,
            JournalStart(
                seq=seq,
                type=type,
                params=params,
                started_at=started_at,
                client_id=client_id,
                housekeeping=True,
            ),
        )
        await self._journal(
            session,
            JournalDone(seq=seq, status="success", duration_ms=0.0, result=msgspec.Raw(result)),
        )
        session.record(
            CommandRecord(
                seq=seq,
                type=type,
                params=params,
                status="success",
                started_at=started_at,
                duration_ms=0.0,
                client_id=client_id,
                result=msgspec.Raw(result),
                housekeeping=True,
            )
        )
        log.info("housekeeping_answered", session_id=session.session_id, type=type, seq=seq)

    async def state(self, ref: str) -> StateResult:
        session = await self._open_session(ref)
        scene = await session.link.request("get_state")
        session.track_state(scene)
        return StateResult(session_id=session.session_id, scene=msgspec.Raw(scene))

    async def close(self, ref: str) -> CloseResult:
        session = await self._open_session(ref)
        session.closing = True
        try:
            await session.idle.wait()
            fresh = await self._final_snapshot(session)
            if fresh:
                session.snapshot = await take_snapshots(
                    session.link,
                    self.store,
                    session.session_id,
                    blend=self.blend_snapshots,
                    thumbnail=self.thumbnails,
                )
            await session.journal.close()
            data = session.to_data(await self._history(session), closed_at=time.time())
            try:
                await self.store.save(data)
            except OSError as error:
                await self._reopen_journal(session)
                raise storage_error(error) from None
            await self.store.remove_journal(session.session_id)
        except BaseException:
            session.closing = False
            raise
        del self._open[session.session_id]
        await self._attach_latest(session.link)
        path = self.store.path_for(session.session_id)
        log.info(
            "session_closed",
            session_id=session.session_id,
            commands=session.command_count,
            path=str(path),
            snapshot_fresh=fresh,
        )
        self.events.publish("session_closed", {"session_id": session.session_id, "path": str(path)})
        return CloseResult(
            session_id=session.session_id,
            path=str(path),
            command_count=session.command_count,
            snapshot_fresh=fresh,
        )

    async def _final_snapshot(self, session: Session) -> bool:
        if not session.link.connected:
            return False
        try:
            session.track_state(await session.link.request("get_state"))
        except (RemoteProtocolError, msgspec.DecodeError) as error:
            log.warning("final_snapshot_failed", session_id=session.session_id, reason=str(error))
            return False
        return True

    async def _reopen_journal(self, session: Session) -> None:
        session.journal = await self.store.open_journal(session.session_id)
        await self._nursery_or_fail().start(session.journal.run)

    async def list(self) -> ListResult:
        listed, damaged = await self.store.list()
        summaries = [self._summary(s) for s in self._open.values()]
        summaries += [
            SessionSummary(
                session_id=item.summary.session_id,
                name=item.summary.name,
                status="closed",
                created_at=item.summary.created_at,
                closed_at=item.summary.closed_at,
                command_count=item.summary.command_count,
                size_bytes=item.size_bytes,
                restored_from=item.summary.restored_from,
            )
            for item in listed
            if item.summary.session_id not in self._open
        ]
        summaries.sort(key=lambda s: s.created_at)
        return ListResult(
            sessions=summaries,
            damaged=[DamagedEntry(file=d.file, reason=d.reason) for d in damaged],
        )

    def _summary(self, session: Session) -> SessionSummary:
        try:
            size = session.journal.path.stat().st_size
        except OSError:
            size = 0
        return SessionSummary(
            session_id=session.session_id,
            name=session.name,
            status="open",
            created_at=session.created_at,
            closed_at=None,
            command_count=session.command_count,
            size_bytes=size,
            restored_from=session.restored_from,
        )

    async def show(self, ref: str) -> bytes:
        """The whole record as JSON: from disk when closed, built from the journal when open."""
        session_id = await self.resolve(ref)
        session = self._open.get(session_id)
        if session is None:
            return _encoder.encode(await self.store.load(session_id))
        return _encoder.encode(
            {
                "format": 1,
                "session_id": session_id,
                "status": "open",
                "data": session.to_data(await self._history(session)),
            }
        )

    async def _history(self, session: Session) -> builtins.list[CommandRecord]:
        """Every recorded command: the journal, plus outcomes it could not take."""
        replayed = await trio.to_thread.run_sync(replay_journal, session.journal.path)
        commands = {command.seq: command for command in replayed.commands}
        commands.update(session.unjournaled)
        return [commands[seq] for seq in sorted(commands)]

    async def delete(self, ref: str) -> DeleteResult:
        session_id = await self.resolve(ref)
        if session_id in self._open:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT,
                f"session {session_id} is open; close it first "
                f"(run: blender-session close {session_id})",
            )
        removed = await self.store.delete(session_id)
        log.info("session_deleted", session_id=session_id, removed=removed)
        return DeleteResult(session_id=session_id, removed=removed)

    async def stats(self) -> StatsResult:
        totals = await self.store.stats()
        return msgspec.convert({**totals, "open_sessions": len(self._open)}, StatsResult)

    async def restore(
        self,
        ref: str,
        name: str | None,
        client_id: str | None,
        path: RestorePath = "auto",
        blender: str | None = None,
    ) -> RestoreResult:
        """Open a new session from a closed record and bring its scene back (restore.py)."""
        return await restore_session(self, ref, name, path, client_id, blender)

    async def thumbnail(self, ref: str) -> ThumbnailResult:
        return await session_thumbnail(self, ref)

    def idle_sessions(self, idle_ttl_s: float) -> builtins.list[str]:
        """Open sessions with nothing in flight and no activity for `idle_ttl_s`."""
        now = trio.current_time()
        return [
            session.session_id for session in self._open.values()
            if not session.closing and session.in_flight == 0
            and now - session.last_active_at >= idle_ttl_s
        ]  # fmt: skip

    async def cleanup(
        self, older_than_days: float | None, keep: int | None, dry_run: bool
    ) -> CleanupResult:
        return await cleanup_sessions(self, older_than_days, keep, dry_run)

    async def export(self, refs: builtins.list[str], everything: bool, path: str) -> ExportResult:
        return await export_archive(self, refs, everything, path)

    async def import_archive(self, path: str, overwrite: bool) -> ImportResult:
        return await import_archive(self, path, overwrite)

    def open_session_or_none(self, session_id: str) -> Session | None:
        return self._open.get(session_id)

    def is_open(self, session_id: str) -> bool:
        return session_id in self._open

    async def set_data(self, ref: str, key: str, value: msgspec.Raw) -> SetDataResult:
        """Attach a JSON value to an open session under `key` (null removes it)."""
        session = await self._open_session(ref)
        if len(value) > MAX_DATA_VALUE_BYTES:
            raise RemoteProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"value for {key!r} is {len(value)} bytes; the limit is {MAX_DATA_VALUE_BYTES}",
            )
        await self._journal(session, JournalData(key=key, value=value))
        if bytes(value) == b"null":
            session.data.pop(key, None)
        else:
            session.data[key] = value
        return SetDataResult(session_id=session.session_id, key=key, keys=sorted(session.data))

    def status(self, *, pid: int | None = None) -> StatusResult:
        return StatusResult(
            daemon_version=__version__,
            pid=pid or os.getpid(),
            data_dir=str(self.store.data_dir),
            uptime_s=round(trio.current_time() - self._started_at, 3),
            control=self.control_endpoint,
            proxy=self.proxy_endpoint,
            blender=self.link_info(),
            blenders=[self.link_info(link) for link in self.links.values()],
            open_sessions=[self._summary(s) for s in self._open.values()],
        )

    def link_info(self, link: AddonLink | None = None) -> BlenderLinkInfo:
        link = link or self.link
        snap = link.snapshot
        return BlenderLinkInfo(
            endpoint=link.endpoint,
            status=snap.status.value,
            connected=link.connected,
            blender_version=snap.blender_version,
            file=snap.file,
            last_heartbeat=snap.last_heartbeat,
            busy_for_ms=snap.busy_for_ms,
            queue_depth=snap.queue_depth,
            last_error=snap.last_error,
            execute_code_enabled=snap.execute_code_enabled,
            found=snap.found,
        )

    def open_sessions(self) -> Iterator[Session]:
        return iter(self._open.values())

    # --- LinkObserver ---------------------------------------------------------------

    def link_changed(self, link: AddonLink) -> None:
        self.events.publish("heartbeat", self.link_info(link))

    def scene_changed(self, link: AddonLink, data: msgspec.Raw, missed: int) -> None:
        for session in self._open.values():
            if session.link is link:
                session.track_scene_event(data)
        self.events.publish(
            "scene_changed", {"blender": link.endpoint, "data": data, "missed": missed}
        )
