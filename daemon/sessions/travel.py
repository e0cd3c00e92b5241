"""The time-travel ops: checkpoints on demand, the timeline, diffs between steps (or
two sessions), rewinds (and undo), and a restarted Blender brought back to where its
session was. The history and the plans are timetravel.py's; this checks requests
against the sessions and records what was done as steps."""

from __future__ import annotations

import time

import msgspec
import structlog

from ..protocol import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from ..protocol.commands import READ_ONLY_COMMANDS
from ..protocol.ops import (
    CheckpointResult,
    DiffResult,
    RewindResult,
    TimelineItem,
    TimelineResult,
)
from ..store import (
    BlenderRestart,
    CheckpointInfo,
    CommandRecord,
    EditEntry,
    RewindEntry,
    SessionStore,
    tags,
)
from .catalog import Catalog
from .checkpoints import MANUAL, RESTART, REWIND, Checkpointer
from .history import Step
from .scene_model import SceneModel, diff, touched
from .session import Session
from .timetravel import (
    ClosedSteps,
    OpenSteps,
    Plan,
    Replayed,
    Steps,
    bring_back,
    model_at,
    plan,
)

log = structlog.get_logger("timetravel")


class TimeTravel:
    def __init__(self, store: SessionStore, catalog: Catalog, checkpointer: Checkpointer) -> None:
        self.store = store
        self.catalog = catalog
        self.registry = catalog.registry
        self.checkpointer = checkpointer
        self._finishing: set[str] = set()  # sessions whose interrupted rewind is finishing

    async def _steps(self, ref: str) -> Steps:
        session_id = await self.catalog.resolve(ref)
        session = self.registry.get(session_id)
        if session is not None:
            await self.checkpointer.settled(session)
            return OpenSteps(session)
        self.catalog.check_not_recovering(session_id)
        return ClosedSteps(self.store, (await self.store.load_head(session_id)).data)

    # --- checkpoint -----------------------------------------------------------------

    async def checkpoint(self, ref: str, label: str | None) -> CheckpointResult:
        session = await self.catalog.open(ref)
        session.check_accepting()
        info = await self.checkpointer.take(session, MANUAL, label, manual=True)
        return CheckpointResult(
            session_id=session.session_id,
            seq=info.seq,
            label=info.label,
            bytes=info.bytes,
            duration_ms=info.duration_ms,
            reason=info.reason,
        )

    # --- timeline -------------------------------------------------------------------

    async def timeline(self, ref: str, after_seq: int, limit: int) -> TimelineResult:
        steps = await self._steps(ref)
        page, next_after = await steps.page(after_seq, limit)
        upper = _seq(page[-1]) if page and next_after is not None else steps.last_seq
        items = [timeline_item(step) for step in page]
        items += [
            checkpoint_item(c)
            for seq, c in sorted(_all_checkpoints(steps).items())
            if after_seq <= seq <= upper and not (seq == 0 and after_seq > 0)
        ]
        items.sort(key=lambda item: (item.seq, item.kind == "checkpoint"))
        return TimelineResult(
            session_id=steps.session_id,
            entries=items,
            next_after_seq=next_after,
            last_seq=steps.last_seq,
        )

    # --- diff -----------------------------------------------------------------------

    async def diff(
        self, ref: str, from_seq: int | None, to_seq: int | None, other: str | None
    ) -> DiffResult:
        steps = await self._steps(ref)
        if other is not None:
            other_steps = await self._steps(other)
            before, notes = await self._final(steps)
            after, other_notes = await self._final(other_steps)
            result = diff(before.objects, after.objects)
            all_notes = notes + other_notes
            return _with(
                result, session_id=steps.session_id, other_session_id=other_steps.session_id,
                exact=not all_notes, notes=all_notes,
            )  # fmt: skip
        if from_seq is None:
            raise RemoteProtocolError(
                ErrorCode.INVALID_PARAMS, "say from_seq (and to_seq), or other_session_id"
            )
        last = steps.last_seq
        to = last if to_seq is None else to_seq
        before, _ = await model_at(self.store, steps, from_seq)
        after, _ = await model_at(self.store, steps, to)
        notes = before.unknown + after.unknown
        return _with(
            diff(before.objects, after.objects), session_id=steps.session_id,
            from_seq=from_seq, to_seq=to, exact=not notes, notes=notes,
        )  # fmt: skip

    async def _final(self, steps: Steps) -> tuple[SceneModel, list[str]]:
        """A session's last scene: a closed one's final get_state, else its model."""
        if isinstance(steps, ClosedSteps) and bytes(steps.head.state.scene) != b"null":
            try:
                return SceneModel.from_state(bytes(steps.head.state.scene)), []
            except DECODE_ERRORS:
                pass
        model, _ = await model_at(self.store, steps, steps.last_seq)
        return model, model.unknown

    # --- rewind and undo --------------------------------------------------------------

    async def rewind(self, ref: str, to_seq: int, client_id: str | None) -> RewindResult:
        session = await self.catalog.open(ref)
        return await self._rewind(session, to_seq, client_id)

    async def undo(self, ref: str, commands: int, client_id: str | None) -> RewindResult:
        """Rewind to just before the session's `commands`-th last command that changed
        the scene, following the scene's own line back through earlier rewinds."""
        session = await self.catalog.open(ref)
        await self.checkpointer.settled(session)
        steps = OpenSteps(session)
        seq, found = session.last_seq, 0
        while seq > 0:
            step = await _step_at(steps, seq)
            if isinstance(step, RewindEntry) and step.status == "success":
                seq = step.to_seq
                continue
            if isinstance(step, CommandRecord | EditEntry) and _changed_scene(step):
                found += 1
                if found == commands:
                    return await self._rewind(session, seq - 1, client_id)
            seq -= 1
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"session {session.session_id} has {found} step(s) to undo, not {commands}",
        )

    async def _rewind(self, session: Session, to_seq: int, client_id: str | None) -> RewindResult:
        session.check_accepting()
        link = session.link
        if not link.connected:
            raise link.unavailable_error()
        others = [
            s.session_id for s in self.registry.bound_to(link)
            if s is not session and not s.closing and s.detached is None
        ]  # fmt: skip
        if others:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT,
                f"sessions {others} are open on the same Blender and would see their scene "
                "change; close them first",
            )
        session.busy = f"rewinding to step {to_seq}"
        try:
            await session.wait_idle()
            await self.checkpointer.settled(session)
            found = await plan(OpenSteps(session), to_seq)
            started = RewindEntry(
                seq=session.next_seq, at=time.time(), to_seq=to_seq, client_id=client_id,
                status="started", base_seq=found.base.seq,
            )  # fmt: skip
            try:  # in the file before Blender is touched: a crash now is known
                session.add_rewind(started)
                await session.journal.durable()
            except OSError as failure:
                raise self.store.storage_error(failure, "nothing was rewound") from None
            entry = await self._bring_back(session, found, started)
        finally:
            session.busy = None
        if entry.status != "success":
            raise RemoteProtocolError(ErrorCode.INTERNAL, f"the rewind failed: {entry.error}")
        log.info("session_rewound", session_id=session.session_id, seq=entry.seq,
                 to_seq=to_seq, replayed=entry.replayed, exact=not entry.skipped)  # fmt: skip
        return RewindResult(
            session_id=session.session_id, seq=entry.seq, to_seq=to_seq,
            base_seq=found.base.seq, replayed=entry.replayed, skipped=entry.skipped,
            exact=not entry.skipped, duration_ms=entry.duration_ms,
        )  # fmt: skip

    async def _bring_back(self, session: Session, found: Plan, started: RewindEntry) -> RewindEntry:
        """Bring the plan's scene into the session's Blender and journal how the rewind
        `started` ended (its line with the same seq). A rewind that fails leaves a
        checkpoint of whatever Blender got to (the scene after this step)."""
        began = time.monotonic()
        error: str | None = None
        try:
            replayed = await bring_back(
                self.store, session.link, found, self.store.working_copy_path(session.session_id)
            )
        except RemoteProtocolError as failure:
            error, replayed = failure.message, Replayed()
        entry = msgspec.structs.replace(
            started, status="failed" if error else "success", replayed=replayed.replayed,
            skipped=found.skipped + replayed.failed, error=error,
            duration_ms=round((time.monotonic() - began) * 1000, 3),
        )  # fmt: skip
        session.interrupted_rewind = None
        try:
            session.add_rewind(entry)
        except OSError as failure:
            log.error("rewind_not_journaled", session_id=session.session_id, reason=str(failure))
        if error is not None:  # the scene is whatever Blender got to: keep it
            await self._checkpoint_quietly(session, REWIND)
        else:
            await self._refresh(session)
        return entry

    async def finish_interrupted(self, session: Session) -> None:
        """The daemon died in a rewind (its `started` line has no end): once the same
        Blender is back, finish it, so the scene and the record agree again."""
        started = session.interrupted_rewind
        if started is None or session.session_id in self._finishing:
            return
        self._finishing.add(session.session_id)
        session.busy = "finishing a rewind the daemon's restart interrupted"
        try:
            await self.checkpointer.settled(session)
            found = await plan(OpenSteps(session), started.to_seq)
            entry = await self._bring_back(session, found, started)
        except RemoteProtocolError as failure:
            log.error("rewind_not_finished", session_id=session.session_id,
                      seq=started.seq, reason=failure.message)  # fmt: skip
            return
        finally:
            session.busy = None
            self._finishing.discard(session.session_id)
        log.warning("interrupted_rewind_finished", session_id=session.session_id,
                    seq=entry.seq, to_seq=entry.to_seq, status=entry.status)  # fmt: skip

    async def _checkpoint_quietly(self, session: Session, reason: str) -> None:
        try:
            await self.checkpointer.take(session, reason)
        except RemoteProtocolError as error:
            log.warning("checkpoint_failed", session_id=session.session_id, reason=error.message)

    async def _refresh(self, session: Session) -> None:
        try:
            await session.read_scene()
        except (RemoteProtocolError, *DECODE_ERRORS) as error:
            log.warning("scene_not_read", session_id=session.session_id, reason=str(error))

    # --- a restarted Blender ----------------------------------------------------------

    async def resume(self, session: Session, instance: str, blender_version: str) -> None:
        """Bring the session's scene (its last step) into a Blender that restarted
        under it, before anything more is recorded; a `restart` step says so. If it
        cannot be brought back, the session is detached, as with `--on-blender-restart
        mark`."""
        if session.interrupted_rewind is not None:  # its end is the scene to bring back
            await self.finish_interrupted(session)
            if session.interrupted_rewind is None:
                self._restarted(session, instance, blender_version, None)
                return
        session.busy = "bringing its scene back into a restarted Blender"
        error: str | None = None
        try:
            await self.checkpointer.settled(session)
            found = await plan(OpenSteps(session), session.last_seq)
            replayed = await bring_back(
                self.store, session.link, found, self.store.working_copy_path(session.session_id)
            )
            if found.skipped or replayed.failed:
                log.warning("resume_not_exact", session_id=session.session_id,
                            skipped=found.skipped + replayed.failed)  # fmt: skip
        except RemoteProtocolError as failure:
            error = failure.message
        finally:
            session.busy = None
        self._restarted(session, instance, blender_version, error)
        if error is None:
            await self._checkpoint_quietly(session, RESTART)
            await self._refresh(session)

    def _restarted(
        self, session: Session, instance: str, blender_version: str, error: str | None
    ) -> None:
        try:
            seq = session.resumed_in(instance, blender_version, error)
        except OSError as failure:
            log.error("restart_not_journaled", session_id=session.session_id, reason=str(failure))
            seq = None
        log.warning("blender_resumed" if error is None else "blender_resume_failed",
                    session_id=session.session_id, seq=seq, reason=error)  # fmt: skip


async def _step_at(steps: Steps, seq: int) -> Step | None:
    page, _ = await steps.page(seq - 1, 1)
    return page[0] if page and _seq(page[0]) == seq else None


def _changed_scene(step: CommandRecord | EditEntry) -> bool:
    if isinstance(step, EditEntry):
        return True
    return (
        step.status == "success"
        and not step.housekeeping
        and not step.observation
        and step.type not in READ_ONLY_COMMANDS
    )


def _seq(step: Step) -> int:
    seq = step.seq
    assert seq is not None
    return seq


def _all_checkpoints(steps: Steps) -> dict[int, CheckpointInfo]:
    if isinstance(steps, OpenSteps):
        return dict(steps.session.checkpoints)
    assert isinstance(steps, ClosedSteps)
    return {c.seq: c for c in steps.head.checkpoints}


def timeline_item(step: Step) -> TimelineItem:
    match step:
        case CommandRecord():
            return TimelineItem(
                seq=step.seq, kind="command", at=step.started_at, status=step.status,
                summary=step.type + tags(step),
                objects=touched(step), type=step.type, client_id=step.client_id,
                duration_ms=step.duration_ms,
                error=f"{step.error.code}: {step.error.message}" if step.error else None,
                housekeeping=step.housekeeping, observation=step.observation,
            )  # fmt: skip
        case EditEntry():
            return TimelineItem(
                seq=step.seq, kind="edit", at=step.at, status="success",
                summary=f"edited beside the daemon ({step.source}): {len(step.objects)} changed, "
                f"{len(step.removed)} removed", objects=touched(step),
            )  # fmt: skip
        case RewindEntry():
            return TimelineItem(
                seq=step.seq, kind="rewind", at=step.at, status=step.status,
                summary=f"rewound to step {step.to_seq} (checkpoint {step.base_seq}, "
                f"{step.replayed} replayed)", client_id=step.client_id,
                duration_ms=step.duration_ms, error=step.error, to_seq=step.to_seq,
            )  # fmt: skip
        case BlenderRestart():
            assert step.seq is not None
            return TimelineItem(
                seq=step.seq, kind="restart", at=step.at,
                status="success" if step.resumed else "failed",
                summary=f"Blender restarted ({step.previous_instance[:8]} -> "
                f"{step.instance[:8]}): " + ("its scene was brought back" if step.resumed
                                             else f"not brought back: {step.error}"),
                error=step.error,
            )  # fmt: skip


def checkpoint_item(checkpoint: CheckpointInfo) -> TimelineItem:
    return TimelineItem(
        seq=checkpoint.seq, kind="checkpoint", at=checkpoint.taken_at,
        status="removed" if checkpoint.removed else "kept",
        summary=f"checkpoint ({checkpoint.reason}"
        + (f", {checkpoint.label!r}" if checkpoint.label else "") + ")",
        duration_ms=checkpoint.duration_ms, label=checkpoint.label,
    )  # fmt: skip


def _with(result: DiffResult, **fields: object) -> DiffResult:
    return msgspec.structs.replace(result, **fields)
