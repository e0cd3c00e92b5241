"""Any step of a session, brought back: the scene right after step `k`, in Blender
(rewind, restore at a step, a restarted Blender resumed) or as object records (diff).

The scene after step k is found from the history alone:
- the nearest checkpoint at or before k is an exact copy of some step c <= k;
- the steps in (c, k] are applied on top of it: commands that changed the scene are
  sent again with their recorded params, edits are applied from their records;
- a rewind step r in (c, k] says that the scene after r was the scene after its
  `to_seq`: the steps after r are kept, and the search goes on from `to_seq`.
Steps that cannot be redone exactly (a command whose outcome is unknown; an opaque
one whose checkpoint was thinned out) are listed, and the plan says it is not exact.
Nothing is ever deleted: every step before a rewind stays reachable by another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec
import structlog
import trio

from ..protocol import DECODE_ERRORS, ErrorCode, NoAnswer, Outcome, RemoteProtocolError
from ..protocol.commands import OPAQUE_COMMANDS, READ_ONLY_COMMANDS
from ..protocol.messages import LinkSuccess
from ..store import CheckpointInfo, CommandRecord, EditEntry, RewindEntry, SessionData, SessionStore
from .blender import BlenderLink
from .history import Step, closed_page, open_page
from .scene_model import SceneModel
from .session import Session

log = structlog.get_logger("timetravel")
_encoder = msgspec.json.Encoder()
# Replayed requests in flight at once; steps read at a time; rewinds followed in a
# chain before the plan gives up (a loop could only come from a damaged history).
REPLAY_WINDOW = 64
READ_STEPS = 2000
MAX_HOPS = 10_000


class Steps(Protocol):
    """A session's history as a plan reads it: its checkpoints and pages of steps."""

    session_id: str

    def checkpoints(self) -> dict[int, CheckpointInfo]: ...

    async def page(self, after_seq: int, limit: int) -> tuple[list[Step], int | None]: ...

    @property
    def last_seq(self) -> int: ...


class OpenSteps:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.session_id = session.session_id

    def checkpoints(self) -> dict[int, CheckpointInfo]:
        return {seq: c for seq, c in self.session.checkpoints.items() if not c.removed}

    async def page(self, after_seq: int, limit: int) -> tuple[list[Step], int | None]:
        page = await open_page(self.session, after_seq, limit)
        return page.steps, page.next_after_seq

    @property
    def last_seq(self) -> int:
        return self.session.last_seq


class ClosedSteps:
    def __init__(self, store: SessionStore, head: SessionData) -> None:
        self.store = store
        self.head = head
        self.session_id = head.session_id

    def checkpoints(self) -> dict[int, CheckpointInfo]:
        return {c.seq: c for c in self.head.checkpoints if not c.removed}

    async def page(self, after_seq: int, limit: int) -> tuple[list[Step], int | None]:
        page = await closed_page(self.store, self.head, after_seq, limit)
        return page.steps, page.next_after_seq

    @property
    def last_seq(self) -> int:
        return self.head.last_seq or self.head.command_count


@dataclass
class Plan:
    session_id: str  # whose checkpoints and steps
    to_seq: int
    base: CheckpointInfo
    steps: list[CommandRecord | EditEntry] = field(default_factory=list)  # to apply, in order
    skipped: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not self.skipped


async def plan(steps: Steps, to_seq: int) -> Plan:
    """How to get the scene right after step `to_seq`. Raises invalid_params for a
    step that does not exist, not_found when no checkpoint lies at or before it."""
    if to_seq > steps.last_seq:
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS,
            f"session {steps.session_id} has no step {to_seq} (its last is {steps.last_seq})",
        )
    checkpoints = steps.checkpoints()
    pieces: list[list[Step]] = []  # newest first
    target = to_seq
    for _ in range(MAX_HOPS):
        base_seq = max((seq for seq in checkpoints if seq <= target), default=None)
        if base_seq is None:
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND,
                f"session {steps.session_id} has no checkpoint at or before step {target} "
                "to start from (its Blender was not connected, or not on this machine, "
                "when it began)",
            )
        between = await _read(steps, base_seq, target)
        rewinds = [s for s in between if isinstance(s, RewindEntry)]
        if not rewinds:
            pieces.append(between)
            break
        last = rewinds[-1]
        pieces.append([s for s in between if _seq(s) > last.seq])
        if last.status != "success":  # its checkpoint (taken then) would have been found
            pieces.append([])
            result = Plan(steps.session_id, to_seq, checkpoints[base_seq])
            result.skipped.append(f"#{last.seq} a rewind that failed, without a checkpoint")
            return _with_steps(result, pieces)
        target = last.to_seq
    else:
        raise RemoteProtocolError(ErrorCode.INTERNAL, "the history's rewinds go round in a loop")
    return _with_steps(Plan(steps.session_id, to_seq, checkpoints[base_seq]), pieces)


def _with_steps(result: Plan, pieces: list[list[Step]]) -> Plan:
    for piece in reversed(pieces):
        for step in piece:
            if isinstance(step, EditEntry):
                result.steps.append(step)
            elif isinstance(step, CommandRecord):
                why = _not_redone(step)
                if why is None:
                    result.steps.append(step)
                elif why:
                    result.skipped.append(f"#{step.seq} {step.type}: {why}")
    return result


def _not_redone(command: CommandRecord) -> str | None:
    """Why a command is not sent again ("" when it changed nothing), or None."""
    if (
        command.housekeeping
        or command.observation
        or command.type in READ_ONLY_COMMANDS
        or command.status == "error"
    ):
        return ""
    if command.status == "unknown":
        return "its outcome is unknown (Blender never answered): it may or may not have run"
    if command.type in OPAQUE_COMMANDS:
        return "its effect is not in its record and its checkpoint was thinned out"
    return None


async def _read(steps: Steps, after_seq: int, up_to: int) -> list[Step]:
    found: list[Step] = []
    cursor: int | None = after_seq
    while cursor is not None and cursor < up_to:
        page, cursor = await steps.page(cursor, READ_STEPS)
        found += [s for s in page if _seq(s) <= up_to]
        if page and _seq(page[-1]) >= up_to:
            break
    return found


def _seq(step: Step) -> int:
    seq = step.seq
    assert seq is not None
    return seq


# --- as object records (diff) ---------------------------------------------------------


async def model_at(store: SessionStore, steps: Steps, to_seq: int) -> tuple[SceneModel, Plan]:
    """The scene's objects right after `to_seq`, from the history: no Blender."""
    found = await plan(steps, to_seq)
    state = await store.read_checkpoint_state(steps.session_id, found.base.seq)
    try:
        model = SceneModel.from_state(state)
    except DECODE_ERRORS as error:
        raise RemoteProtocolError(
            ErrorCode.INTERNAL, f"the checkpoint of step {found.base.seq} cannot be read: {error}"
        ) from None
    for step in found.steps:
        model.apply(step)
    model.unknown += found.skipped
    return model, found


# --- in Blender -----------------------------------------------------------------------


@dataclass
class Replayed:
    replayed: int = 0
    failed: list[str] = field(default_factory=list)
    duration_ms: float = 0.0


async def bring_back(
    store: SessionStore, link: BlenderLink, found: Plan, working_copy: Path
) -> Replayed:
    """Make the Blender's scene the plan's: open a copy of its checkpoint (Blender's
    file is then `working_copy`, never the checkpoint itself), then send its steps
    again, pipelined. Raises RemoteProtocolError when Blender is gone or cannot open
    the checkpoint (then the scene is whatever it got to)."""
    began = time.monotonic()
    copy = await store.copy_checkpoint(found.session_id, found.base.seq, working_copy)
    await link.request("open_blend", _encoder.encode({"path": str(copy)}))
    result = Replayed()
    window = trio.Semaphore(REPLAY_WINDOW)
    outstanding = 0
    all_in = trio.Event()

    def answered(label: str) -> Callable[[Outcome], None]:
        def deliver(outcome: Outcome) -> None:
            nonlocal outstanding
            window.release()
            outstanding -= 1
            if not isinstance(outcome, LinkSuccess):
                result.failed.append(f"{label}: {_outcome_text(link, label, outcome)}")
            if outstanding == 0 and sending_done:
                all_in.set()

        return deliver

    sending_done = False
    for step in found.steps:
        for type, params, label in _requests(step):
            await window.acquire()
            outstanding += 1
            try:
                link.submit(type, params, answered(label))
            except RemoteProtocolError:
                outstanding -= 1
                raise
        result.replayed += 1
    sending_done = True
    if outstanding == 0:
        all_in.set()
    await all_in.wait()
    result.duration_ms = round((time.monotonic() - began) * 1000, 3)
    return result


def _requests(step: CommandRecord | EditEntry) -> Iterator[tuple[str, bytes, str]]:
    if isinstance(step, CommandRecord):
        yield step.type, bytes(step.params), f"#{step.seq} {step.type}"
        return
    if step.objects:
        params = (
            b'{"objects":[' + b",".join(bytes(raw) for raw in step.objects) + b'],"prune":false}'
        )
        yield "apply_state", params, f"#{step.seq} edit"
    for name in step.removed:
        yield "delete_object", _encoder.encode({"name": name}), f"#{step.seq} edit (remove {name})"


def _outcome_text(link: BlenderLink, label: str, outcome: Outcome) -> str:
    if isinstance(outcome, NoAnswer):
        return outcome.name.lower()
    return link.error_for(label, outcome).message


__all__ = ["ClosedSteps", "OpenSteps", "Plan", "Replayed", "bring_back", "model_at", "plan"]
