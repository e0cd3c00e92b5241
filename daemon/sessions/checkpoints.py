"""Checkpoints: exact copies of a session's scene tied to a step, from which any step
can be brought back (timetravel.py) and the final snapshot is made at close.

A checkpoint of step `seq` is a .blend Blender saves (a copy, compressed) into
`<id>.checkpoints/` and the scene's get_state beside it. Both requests go down the
link in the command pipeline's order, so they capture the scene right after step
`seq`: after an opaque command they are sent right behind it (`after_send`); a
checkpoint of the current step (manual, after edits, at close) waits until every
step started so far has gone out (`journal.when_written`).

When (the policy, `CheckpointPolicy`):
- at open (step 0), so every later step has something to start from;
- right after every opaque command (execute_code, apply_state, open_blend): its
  effect is not in its result, so a replay could not redo it;
- after a burst of edits made beside the daemon, once they stop for `edit_quiet_s`;
- periodically, behind a command that may change the scene once `every_steps` steps
  have passed since the newest checkpoint, while checkpoints have cost Blender no
  more than `budget` of the session's time (the cost: the addon's save time plus the
  scene read's), so a rewind replays at most about that many steps;
- on demand (`session.checkpoint`), and at close.
Retention: at most `max_count` checkpoints and `max_bytes` per session; past that the
oldest automatic ones are thinned out (periodic ones first), never a manual one, the
open one or the newest. A thinned checkpoint stays listed, `removed`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec
import structlog
import trio

from ..config import LOOPBACK_HOSTS
from ..protocol import DECODE_ERRORS, ErrorCode, NoAnswer, Outcome, RemoteProtocolError
from ..protocol.commands import OPAQUE_COMMANDS, READ_ONLY_COMMANDS
from ..protocol.messages import LinkSuccess
from ..store import CheckpointInfo, SessionStore
from .session import CommandStart, Session

log = structlog.get_logger("checkpoints")
_encoder = msgspec.json.Encoder()


class _SaveResult(msgspec.Struct):
    bytes: int = 0
    duration_ms: float = 0.0


_save_decoder = msgspec.json.Decoder(_SaveResult)


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    every_steps: int = 500
    budget: float = 0.05  # of the session's time spent on periodic checkpoints, at most
    max_count: int = 100
    max_bytes: int = 2 * 1024**3
    edit_quiet_s: float = 0.5


# Reasons a checkpoint is taken (its `reason`); manual ones are never thinned.
OPEN, OPAQUE, EDITS, PERIODIC, MANUAL, REWIND, RESTART, CLOSE = (
    "open", "opaque", "edits", "periodic", "manual", "rewind", "restart", "close",
)  # fmt: skip
THIN_FIRST = (PERIODIC, EDITS, CLOSE, REWIND, RESTART, OPAQUE)


@dataclass
class _Taking:
    """One checkpoint on its way: the save and the scene read, then the files kept."""

    session: Session
    seq: int
    reason: str
    label: str | None
    manual: bool
    saved_at: float = 0.0  # trio time each answer came
    state_at: float = 0.0
    saved: Outcome | None = None
    state: Outcome | None = None
    done: trio.Event = field(default_factory=trio.Event)
    info: CheckpointInfo | None = None
    error: str | None = None


class Checkpointer:
    def __init__(self, store: SessionStore, policy: CheckpointPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or CheckpointPolicy()
        self._nursery: trio.Nursery | None = None
        self._taking: dict[tuple[str, int], _Taking] = {}
        self._quiet: dict[str, trio.CancelScope] = {}  # sessions waiting for edits to stop
        # Each session's newest checkpoint step, kept or on its way (never thinned).
        self._newest: dict[str, int] = {}
        # Each session's last checkpoint: its cost (ms of Blender's time) and its objects.
        self._last_cost: dict[str, tuple[float, int]] = {}

    def bind(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def possible(self, session: Session) -> bool:
        """Blender must see the data dir to save into it (a loopback Blender)."""
        return session.link.connected and session.link.host in LOOPBACK_HOSTS

    # --- what asks for one ----------------------------------------------------------

    def after_send(self, session: Session, start: CommandStart) -> None:
        """Right after a command went down the link: a checkpoint behind it when it is
        opaque, or when the periodic one is due. Never raises."""
        try:  # once per command: the common case is two comparisons
            if start.type in OPAQUE_COMMANDS and not start.observing:
                reason = OPAQUE
            elif start.type not in READ_ONLY_COMMANDS and self._periodic_due(session, start.seq):
                reason = PERIODIC  # behind a command that may change the scene
            else:
                return
            if self._on_its_way(session, start.seq) is None:
                self._send(self._begin(session, start.seq, reason, None, manual=False))
        except Exception:
            log.exception("checkpoint_not_started", session_id=session.session_id)

    def edited(self, session: Session) -> None:
        """An edit was made beside the daemon: a checkpoint once edits stop a while."""
        waiting = self._quiet.get(session.session_id)
        if waiting is not None:
            waiting.deadline = trio.current_time() + self.policy.edit_quiet_s
            return
        if self._nursery is not None:
            self._nursery.start_soon(self._after_quiet, session)

    async def _after_quiet(self, session: Session) -> None:
        with trio.CancelScope(deadline=trio.current_time() + self.policy.edit_quiet_s) as scope:
            self._quiet[session.session_id] = scope
            try:
                await trio.sleep_forever()
            finally:
                self._quiet.pop(session.session_id, None)
        if session.closing or not session.journal.is_open:
            return
        try:
            await self.take(session, EDITS)
        except RemoteProtocolError as error:
            log.warning(
                "edit_checkpoint_failed", session_id=session.session_id, reason=error.message
            )

    def request(
        self, session: Session, reason: str, label: str | None = None, *, manual: bool = False
    ) -> _Taking | CheckpointInfo:
        """Ask for a checkpoint of the session's current step: it goes down the link
        after every step started so far (at once, if they all went already). Returns
        the existing checkpoint of that step, if there is one. Raises
        RemoteProtocolError when Blender cannot take it."""
        if not self.possible(session):
            raise RemoteProtocolError(
                ErrorCode.BLENDER_UNAVAILABLE,
                f"no checkpoint of session {session.session_id}: its Blender is not "
                "connected (or not on this machine, where it could save into the data dir)",
            )
        seq = session.last_seq
        existing = session.checkpoints.get(seq)
        if existing is not None and not existing.removed:
            if (manual and not existing.manual) or (label and label != existing.label):
                existing = msgspec.structs.replace(
                    existing, manual=existing.manual or manual, label=label or existing.label
                )
                self._note(session, existing)
            return existing
        taking = self._on_its_way(session, seq)
        if taking is not None:  # being taken: a label or `manual` goes with it
            taking.label = taking.label or label
            taking.manual = taking.manual or manual
            return taking
        taking = self._begin(session, seq, reason, label, manual=manual)
        session.journal.when_written(lambda error: self._send_or_fail(taking, error))
        return taking

    async def take(
        self, session: Session, reason: str, label: str | None = None, *, manual: bool = False
    ) -> CheckpointInfo:
        """`request`, and wait for it. Raises RemoteProtocolError (no Blender,
        Blender's error, storage)."""
        taking = self.request(session, reason, label, manual=manual)
        if isinstance(taking, CheckpointInfo):
            return taking
        await taking.done.wait()
        if taking.info is None:
            raise RemoteProtocolError(
                ErrorCode.INTERNAL, f"the checkpoint of step {taking.seq} failed: {taking.error}"
            )
        return taking.info

    async def settled(self, session: Session) -> None:
        """Returns once every checkpoint of the session on its way is kept (or failed),
        so a plan sees them."""
        while True:
            waiting = [t for (sid, _), t in self._taking.items() if sid == session.session_id]
            if not waiting:
                return
            await waiting[0].done.wait()

    # --- taking one -----------------------------------------------------------------

    def _begin(
        self, session: Session, seq: int, reason: str, label: str | None, *, manual: bool
    ) -> _Taking:
        taking = _Taking(session, seq, reason, label, manual)
        self._taking[(session.session_id, seq)] = taking
        self._newest[session.session_id] = max(seq, self._newest_of(session))
        return taking

    def _on_its_way(self, session: Session, seq: int) -> _Taking | None:
        return self._taking.get((session.session_id, seq))

    def _send_or_fail(self, taking: _Taking, error: OSError | None) -> None:
        if error is not None:
            self._failed(taking, f"the journal could not be written: {error}")
        else:
            self._send(taking)

    def _send(self, taking: _Taking) -> None:
        """Both requests, now, in the pipeline's order."""
        session = taking.session
        if not self.possible(session):
            self._failed(taking, "Blender is not connected")
            return
        blend, _ = self.store.checkpoint_paths(session.session_id, taking.seq)
        params = _encoder.encode({"path": str(blend), "copy": True, "compress": True})
        try:
            session.link.submit(
                "save_blend", params, lambda outcome: self._in(taking, saved=outcome)
            )
            session.link.submit("get_state", b"{}", lambda outcome: self._in(taking, state=outcome))
        except RemoteProtocolError as error:
            self._failed(taking, error.message)

    def _in(
        self, taking: _Taking, *, saved: Outcome | None = None, state: Outcome | None = None
    ) -> None:
        if saved is not None:
            taking.saved, taking.saved_at = saved, trio.current_time()
        if state is not None:
            taking.state, taking.state_at = state, trio.current_time()
        if taking.saved is None or taking.state is None:
            return
        if self._nursery is None:
            self._failed(taking, "the session service is not running")
            return
        self._nursery.start_soon(self._keep, taking)

    async def _keep(self, taking: _Taking) -> None:
        session, seq = taking.session, taking.seq
        if not isinstance(taking.saved, LinkSuccess):
            self._failed(taking, _why(session, "save_blend", taking.saved))
            return
        if not isinstance(taking.state, LinkSuccess):
            self._failed(taking, _why(session, "get_state", taking.state))
            return
        state = bytes(taking.state.result)
        try:
            saved = _save_decoder.decode(taking.saved.result)
            size = await self.store.keep_checkpoint(session.session_id, seq, state)
        except (OSError, *DECODE_ERRORS) as error:
            self._failed(taking, str(error))
            return
        # Blender's time: the addon's own save time, and the scene read that came right
        # behind it in its queue.
        read_ms = max(taking.state_at - taking.saved_at, 0.0) * 1000
        blend, state_path = self.store.checkpoint_paths(session.session_id, seq)
        info = CheckpointInfo(
            seq=seq,
            reason=taking.reason,
            taken_at=time.time(),
            blend=blend.name,
            state=state_path.name,
            bytes=size,
            duration_ms=round(saved.duration_ms + read_ms, 3),
            label=taking.label,
            manual=taking.manual,
        )
        session.checkpoint_ms += info.duration_ms
        self._last_cost[session.session_id] = (info.duration_ms, len(session.tracker.objects))
        self._note(session, info)
        taking.info = info
        self._taking.pop((session.session_id, seq), None)
        taking.done.set()
        log.info(
            "checkpoint_taken",
            session_id=session.session_id,
            seq=seq,
            reason=taking.reason,
            bytes=size,
        )
        await self._thin(session)

    def _failed(self, taking: _Taking, reason: str) -> None:
        taking.error = reason
        self._taking.pop((taking.session.session_id, taking.seq), None)
        taking.done.set()
        log.warning(
            "checkpoint_failed", session_id=taking.session.session_id, seq=taking.seq, reason=reason
        )

    def _note(self, session: Session, info: CheckpointInfo) -> None:
        try:
            session.note_checkpoint(info)
        except OSError as error:  # the journal is closed: kept in memory for the record
            session.checkpoints[info.seq] = info
            log.warning(
                "checkpoint_not_journaled", session_id=session.session_id, reason=str(error)
            )

    # --- policy ---------------------------------------------------------------------

    def _periodic_due(self, session: Session, seq: int) -> bool:
        every = self.policy.every_steps
        if every <= 0 or seq - self._newest_of(session) < every or not self.possible(session):
            return False
        elapsed_ms = (trio.current_time() - session.opened_at) * 1000
        return session.checkpoint_ms + self._estimate_ms(session) <= self.policy.budget * max(
            elapsed_ms, 1.0
        )

    def _estimate_ms(self, session: Session) -> float:
        """What the next checkpoint will cost Blender: the last one's cost, scaled by
        how the scene grew since (saving is about linear in objects), so the budget
        holds before a checkpoint, not only after it."""
        last = self._last_cost.get(session.session_id)
        if last is None:
            return 0.0
        cost_ms, objects = last
        return cost_ms * max(1.0, len(session.tracker.objects) / max(objects, 1))

    def _newest_of(self, session: Session) -> int:
        newest = self._newest.get(session.session_id)
        if newest is None:  # a session recovered from its journal: from its checkpoints
            kept = [c.seq for c in session.checkpoints.values() if not c.removed]
            newest = self._newest[session.session_id] = max(kept, default=0)
        return newest

    def forget(self, session: Session) -> None:
        """The session closed."""
        self._newest.pop(session.session_id, None)
        self._last_cost.pop(session.session_id, None)

    async def _thin(self, session: Session) -> None:
        """Retention: thin out old automatic checkpoints past the session's caps."""
        kept = sorted(
            (c for c in session.checkpoints.values() if not c.removed), key=lambda c: c.seq
        )
        total = sum(c.bytes for c in kept)
        newest = kept[-1].seq if kept else None
        candidates = [c for c in kept if not c.manual and c.reason != OPEN and c.seq != newest]
        candidates.sort(
            key=lambda c: (THIN_FIRST.index(c.reason) if c.reason in THIN_FIRST else 0, c.seq)
        )
        while candidates and (len(kept) > self.policy.max_count or total > self.policy.max_bytes):
            victim = candidates.pop(0)
            try:
                await self.store.remove_checkpoint(session.session_id, victim.seq)
            except OSError as error:
                log.warning(
                    "checkpoint_not_thinned", session_id=session.session_id, reason=str(error)
                )
                return
            kept.remove(victim)
            total -= victim.bytes
            self._note(session, msgspec.structs.replace(victim, removed=True))


def _why(session: Session, type: str, outcome: Outcome | None) -> str:
    if outcome is None:
        return f"{type}: no answer"
    if isinstance(outcome, NoAnswer):
        return f"{type}: {outcome.name.lower()}"
    return session.link.error_for(type, outcome).message
