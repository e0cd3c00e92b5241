"""Bringing a closed session's scene back into a connected Blender, as a new session,
by the best source available: its .blend snapshot (exact), its last get_state snapshot
through apply_state, or a replay of its recorded commands. The choice is a pure
function; a replay lists every command it could not account for."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import structlog
import trio

from ..protocol import DECODE_ERRORS, ErrorCode, ProtocolError, RemoteProtocolError
from ..protocol.commands import READ_ONLY_COMMANDS
from ..protocol.limits import MAX_SESSION_NAME_CHARS
from ..protocol.ops import CommandResult, RestorePath, RestoreResult
from ..protocol.scene import ApplyStateParams, ApplyStateResult, SceneState, SkippedObject
from ..store import CommandRecord, SessionRecord, SessionStore
from .blender import BlenderLink, Blenders
from .catalog import Catalog
from .checkpoints import OPEN
from .command_path import CommandPath, Reply
from .history import closed_page, split
from .lifecycle import Lifecycle
from .session import Session
from .timetravel import ClosedSteps, bring_back, plan

log = structlog.get_logger("restore")
_encoder = msgspec.json.Encoder()
_apply_state_decoder = msgspec.json.Decoder(ApplyStateParams)
_apply_result_decoder = msgspec.json.Decoder(ApplyStateResult)
_state_decoder = msgspec.json.Decoder(SceneState)

# Commands a replay keeps in flight (the command path's order is kept), and steps read
# from the record at a time.
REPLAY_WINDOW = 64
REPLAY_PAGE_STEPS = 2000

NOT_REPLAYED = {
    "execute_code": "code sent to execute_code is never re-run",
    "open_blend": "opens a file the replay cannot vouch for",
}


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(" ")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def choose_path(
    record: SessionRecord, requested: RestorePath, blend_on_disk: bool, blender_version: str
) -> tuple[RestorePath, list[str]]:
    """Which path to take, and notes on why. Raises not_found when none can work."""
    data = record.data
    notes: list[str] = []
    written_by = data.snapshot.blender_version if data.snapshot else None
    blend_usable = blend_on_disk and data.snapshot is not None and data.snapshot.blend is not None
    if blend_usable and written_by and version_tuple(blender_version) < version_tuple(written_by):
        blend_usable = False
        notes.append(
            f"the .blend snapshot was written by Blender {written_by}; this Blender "
            f"({blender_version}) cannot open newer files, so it was not used"
        )
    has_state = bytes(data.state.scene) != b"null"
    has_commands = data.command_count > 0 or bool(data.commands)
    available = {"blend": blend_usable, "state": has_state, "replay": has_commands}
    if requested != "auto":
        if not available[requested]:
            raise RemoteProtocolError(
                ErrorCode.NOT_FOUND,
                f"session {data.session_id} cannot be restored by {requested!r}: "
                + (notes[0] if notes and requested == "blend" else "that source is missing")
                + f"; available: {[k for k, v in available.items() if v] or 'none'}",
            )
        return requested, notes
    for path in ("blend", "state", "replay"):
        if available[path]:
            if path == "blend":
                notes.append("restored from the .blend snapshot saved at close: the exact scene")
            else:
                source = "state snapshot" if path == "state" else "recorded commands"
                missing = "" if blend_on_disk else " (no .blend snapshot)"
                notes.append(f"restored from the {source}{missing}")
            return path, notes
    raise RemoteProtocolError(
        ErrorCode.NOT_FOUND,
        f"session {data.session_id} has nothing to restore from: no .blend, no state "
        "snapshot and no recorded commands",
    )


def replaced_under(sessions: Iterable[Session], link: BlenderLink, what: str) -> list[str]:
    """What happens to the sessions open on a Blender whose scene `what` (a restore, an
    adoption) replaces: they stay open, their records end with the scene as it was."""
    return [
        f"session {other.session_id}"
        + (f" ({other.name})" if other.name else "")
        + " was open on this Blender and stays open: its record ends with the scene "
        f"as it was before {what}; close it to keep it that way (blender-session "
        f"close {other.session_id})"
        for other in sessions
        if other.link is link
    ]


def replay_plan(commands: list[CommandRecord]) -> tuple[list[CommandRecord], list[SkippedObject]]:
    """The commands a replay sends again, in order, and the ones it cannot account for."""
    sent: list[CommandRecord] = []
    skipped: list[SkippedObject] = []
    for command in commands:
        label = f"#{command.seq} {command.type}"
        if command.housekeeping or command.observation or command.type in READ_ONLY_COMMANDS:
            continue
        if command.status == "unknown":
            skipped.append(
                SkippedObject(
                    name=label,
                    reason="its outcome is unknown (Blender never answered): it may or may not "
                    "have run, so it is not replayed",
                )
            )
        elif command.status != "success":
            continue
        elif command.type in NOT_REPLAYED:
            skipped.append(SkippedObject(name=label, reason=NOT_REPLAYED[command.type]))
        else:
            sent.append(command)
    return sent, skipped


class Restorer:
    def __init__(
        self,
        store: SessionStore,
        catalog: Catalog,
        blenders: Blenders,
        lifecycle: Lifecycle,
        commands: CommandPath,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.blenders = blenders
        self.lifecycle = lifecycle
        self.commands = commands

    async def restore(
        self,
        ref: str,
        name: str | None,
        requested: RestorePath,
        client_id: str | None,
        blender: str | None = None,
        at_seq: int | None = None,
        dry_run: bool = False,
    ) -> RestoreResult:
        source_id = await self.catalog.resolve(ref)
        if source_id in self.catalog.registry:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT, f"session {source_id} is still open; close it before restoring"
            )
        record = await self.store.load_head(source_id)  # the history is read in pages
        if name is None:
            name = await self._restored_name(record.data.name)
        link = self.blenders.pick(blender)
        if not link.connected:
            raise link.unavailable_error()
        if requested == "checkpoint" and at_seq is None:  # its last step
            at_seq = record.data.last_seq or record.data.command_count
        if at_seq is not None and not dry_run:
            return await self._restore_at(record, at_seq, name, link, requested)
        if at_seq is not None:
            path: RestorePath = "checkpoint"
            notes = [f"the scene after step {at_seq}, from the nearest checkpoint before it"]
        else:
            path, notes = choose_path(
                record, requested, self.store.has_blend(source_id), link.info().blender_version
            )
        notes += self._replaced_under(link)
        if dry_run:
            return RestoreResult(
                session_id="", restored_from=source_id, path=path, created=[], updated=[],
                removed=[], skipped=[], notes=notes, at_seq=at_seq,
            )  # fmt: skip
        opened = await self.lifecycle.open(
            name=name, restored_from=source_id, data=record.data.data, blender=link.endpoint
        )
        session = self.catalog.registry.get(opened.session_id)
        assert session is not None  # just opened, and nothing closes it in between
        created: list[str] = []
        updated: list[str] = []
        removed: list[str] = []
        skipped: list[SkippedObject] = []
        if path == "blend":
            working = await self.store.copy_snapshot(
                source_id, self.store.working_copy_path(session.session_id)
            )
            params = msgspec.Raw(_encoder.encode({"path": str(working)}))
            await self.commands.run(session, "open_blend", params, client_id)
            created = _names(await session.read_scene())
            notes.append(f"opened a copy of the .blend snapshot: {working}")
        elif path == "state":
            snapshot = _apply_state_decoder.decode(record.data.state.scene)
            params = msgspec.Raw(_encoder.encode(msgspec.structs.replace(snapshot, prune=True)))
            done = await self.commands.run(session, "apply_state", params, client_id)
            applied = _apply_result_decoder.decode(done.result)
            created, updated, removed = applied.created, applied.updated, applied.removed
            skipped = applied.skipped
        else:
            skipped = await self._replay(session, record, client_id)
            created = _names(await session.read_scene())
        log.info(
            "session_restored",
            session_id=session.session_id,
            restored_from=source_id,
            path=path,
            skipped=len(skipped),
        )
        return RestoreResult(
            session_id=session.session_id,
            restored_from=source_id,
            path=path,
            created=created,
            updated=updated,
            removed=removed,
            skipped=skipped,
            notes=notes,
        )

    def _replaced_under(self, link: BlenderLink) -> list[str]:
        return replaced_under(self.catalog.registry, link, "this restore")

    async def _restored_name(self, source_name: str | None) -> str | None:
        """`<name> (restored)`, or `(restored 2)`... when that is taken; None for a
        session without a name."""
        if not source_name:
            return None
        base = f"{source_name[: MAX_SESSION_NAME_CHARS - 20]} (restored"
        for attempt in range(1, 1000):
            candidate = f"{base})" if attempt == 1 else f"{base} {attempt})"
            try:
                await self.catalog.check_name_free(candidate)
            except RemoteProtocolError:
                continue
            return candidate
        return None

    async def _restore_at(
        self,
        record: SessionRecord,
        at_seq: int,
        name: str | None,
        link: BlenderLink,
        requested: RestorePath,
    ) -> RestoreResult:
        """The scene right after step `at_seq`: its nearest checkpoint at or before it
        and the steps after that (timetravel.py), in a new session whose first
        checkpoint is that scene."""
        source = record.data
        if requested not in ("auto", "checkpoint"):
            raise RemoteProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"a restore at a step starts from a checkpoint; path {requested!r} cannot "
                "be used with at_seq (leave path out)",
            )
        steps = ClosedSteps(self.store, source)
        found = await plan(steps, at_seq)  # checks the step and that a checkpoint exists
        replaced = self._replaced_under(link)
        opened = await self.lifecycle.open(
            name=name, restored_from=source.session_id, data=source.data,
            blender=link.endpoint, first_checkpoint=False,
        )  # fmt: skip
        session = self.catalog.registry.get(opened.session_id)
        assert session is not None  # just opened, and nothing closes it in between
        session.busy = f"being restored at step {at_seq} of {source.session_id}"
        try:
            replayed = await bring_back(
                self.store, link, found, self.store.working_copy_path(session.session_id)
            )
        finally:
            session.busy = None
        skipped = [SkippedObject(name=note.split(":")[0], reason=note) for note in found.skipped]
        skipped += [SkippedObject(name=note.split(":")[0], reason=note) for note in replayed.failed]
        notes = [
            f"the scene after step {at_seq}: checkpoint {found.base.seq} "
            f"({found.base.reason}) and {replayed.replayed} step(s) after it",
            *replaced,
        ]
        if self.lifecycle.checkpointer.possible(session):
            await self.store.prepare_checkpoint_dir(session.session_id)
            try:
                await self.lifecycle.checkpointer.take(session, OPEN)
            except RemoteProtocolError as error:
                notes.append(f"its first checkpoint was not taken: {error.message}")
        created = _names(await session.read_scene())
        log.info("session_restored", session_id=session.session_id,
                 restored_from=source.session_id, path="checkpoint", at_seq=at_seq,
                 skipped=len(skipped))  # fmt: skip
        return RestoreResult(
            session_id=session.session_id, restored_from=source.session_id,
            path="checkpoint", created=created, updated=[], removed=[], skipped=skipped,
            notes=notes, at_seq=at_seq,
        )  # fmt: skip

    async def _replay(
        self, session: Session, record: SessionRecord, client_id: str | None
    ) -> list[SkippedObject]:
        """Start from the scene as it was when the session opened (its open checkpoint's
        state; an empty scene when it has none) and send the recorded scene commands
        again, read a page at a time and pipelined (REPLAY_WINDOW in flight), in order."""
        start = msgspec.Raw(_encoder.encode({"objects": [], "prune": True}))
        opened = next((c for c in record.data.checkpoints if c.seq == 0 and not c.removed), None)
        if opened is not None:
            try:
                state = await self.store.read_checkpoint_state(record.data.session_id, 0)
                snapshot = _apply_state_decoder.decode(state)
                start = msgspec.Raw(_encoder.encode(msgspec.structs.replace(snapshot, prune=True)))
            except (OSError, RemoteProtocolError, *DECODE_ERRORS):
                pass  # its files are gone or unreadable: from an empty scene, as before
        await self.commands.run(session, "apply_state", start, client_id)
        skipped: list[SkippedObject] = []
        window = trio.Semaphore(REPLAY_WINDOW)
        failures: dict[int, SkippedObject] = {}

        def replied(command: CommandRecord) -> Reply:
            def reply(answer: CommandResult | ProtocolError) -> None:
                window.release()
                if isinstance(answer, ProtocolError):
                    failures[command.seq] = SkippedObject(
                        name=f"#{command.seq} {command.type}",
                        reason=f"{answer.code.value}: {answer.message}",
                    )

            return reply

        after = 0
        while True:
            page = await closed_page(self.store, record.data, after, REPLAY_PAGE_STEPS)
            commands, _ = split(page.steps)
            sent, page_skipped = replay_plan(commands)
            skipped += page_skipped
            for command in sent:
                await window.acquire()
                self.commands.submit(
                    session, command.type, command.params, client_id, replied(command)
                )
                self.store.journals.flush()  # sends it: this task is no reader
            if page.next_after_seq is None:
                break
            after = page.next_after_seq
        for _ in range(REPLAY_WINDOW):  # every reply is in
            await window.acquire()
        return skipped + [failures[seq] for seq in sorted(failures)]


def _names(scene: bytes) -> list[str]:
    return [obj.name for obj in _state_decoder.decode(scene).objects]
