"""Bringing a closed session's scene back into a connected Blender, as a new session,
by the best source available: its .blend snapshot (exact), its last get_state snapshot
through apply_state, or a replay of its recorded commands. The choice is a pure
function; a replay lists every command it could not account for."""

from __future__ import annotations

import msgspec
import structlog

from ..protocol import ErrorCode, RemoteProtocolError
from ..protocol.commands import READ_ONLY_COMMANDS
from ..protocol.ops import RestorePath, RestoreResult
from ..protocol.scene import ApplyStateParams, ApplyStateResult, SceneState, SkippedObject
from ..store import CommandRecord, SessionRecord, SessionStore
from .blender import Blenders
from .catalog import Catalog
from .command_path import CommandPath
from .lifecycle import Lifecycle
from .session import Session

log = structlog.get_logger("restore")
_encoder = msgspec.json.Encoder()
_apply_state_decoder = msgspec.json.Decoder(ApplyStateParams)
_apply_result_decoder = msgspec.json.Decoder(ApplyStateResult)
_state_decoder = msgspec.json.Decoder(SceneState)

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
    has_commands = bool(data.commands)
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
            if path != "blend":
                source = "state snapshot" if path == "state" else "recorded commands"
                missing = "" if blend_on_disk else " (no .blend snapshot)"
                notes.append(f"restored from the {source}{missing}")
            return path, notes
    raise RemoteProtocolError(
        ErrorCode.NOT_FOUND,
        f"session {data.session_id} has nothing to restore from: no .blend, no state "
        "snapshot and no recorded commands",
    )


def replay_plan(commands: list[CommandRecord]) -> tuple[list[CommandRecord], list[SkippedObject]]:
    """The commands a replay sends again, in order, and the ones it cannot account for."""
    sent: list[CommandRecord] = []
    skipped: list[SkippedObject] = []
    for command in commands:
        label = f"#{command.seq} {command.type}"
        if command.housekeeping or command.type in READ_ONLY_COMMANDS:
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
    ) -> RestoreResult:
        source_id = await self.catalog.resolve(ref)
        if source_id in self.catalog.registry:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT, f"session {source_id} is still open; close it before restoring"
            )
        record = await self.store.load(source_id)
        link = self.blenders.pick(blender)
        if not link.connected:
            raise link.unavailable_error()
        path, notes = choose_path(
            record, requested, self.store.has_blend(source_id), link.info().blender_version
        )
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

    async def _replay(
        self, session: Session, record: SessionRecord, client_id: str | None
    ) -> list[SkippedObject]:
        """Start from an empty scene and send the recorded scene commands again."""
        sent, skipped = replay_plan(record.data.commands)
        empty = msgspec.Raw(_encoder.encode({"objects": [], "prune": True}))
        await self.commands.run(session, "apply_state", empty, client_id)
        for command in sent:
            try:
                await self.commands.run(session, command.type, command.params, client_id)
            except RemoteProtocolError as error:
                skipped.append(
                    SkippedObject(
                        name=f"#{command.seq} {command.type}",
                        reason=f"{error.code}: {error.message}",
                    )
                )
        return skipped


def _names(scene: bytes) -> list[str]:
    return [obj.name for obj in _state_decoder.decode(scene).objects]
