"""Bringing a closed session's scene back into the connected Blender, by the best
source available: its .blend snapshot (exact), its last get_state snapshot through
apply_state, or a replay of its recorded commands. The choice is a pure function."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import structlog

from .protocol import ErrorCode, RemoteProtocolError
from .protocol.messages import ApplyStateParams, ApplyStateResult, SceneState, SkippedObject
from .protocol.ops import RestorePath, RestoreResult
from .store import SessionRecord

if TYPE_CHECKING:
    from .sessions import SessionManager

log = structlog.get_logger("restore")
_encoder = msgspec.json.Encoder()
_apply_state_decoder = msgspec.json.Decoder(ApplyStateParams)
_apply_result_decoder = msgspec.json.Decoder(ApplyStateResult)
_state_decoder = msgspec.json.Decoder(SceneState)

# Recorded commands that a replay sends again, in order; reads are left out, and so
# are commands that must never run twice on their own (code) or need a file.
REPLAYED = frozenset({"create_object", "delete_object", "transform_object", "rename_object",
                      "select_objects", "set_material", "apply_state"})  # fmt: skip
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


async def restore(
    manager: SessionManager,
    ref: str,
    name: str | None,
    requested: RestorePath,
    client_id: str | None,
    blender: str | None = None,
) -> RestoreResult:
    source_id = await manager.resolve(ref)
    if manager.is_open(source_id):
        raise RemoteProtocolError(
            ErrorCode.CONFLICT, f"session {source_id} is still open; close it before restoring"
        )
    record = await manager.store.load(source_id)
    link = manager.link_for(blender)
    if not link.connected:
        raise link.unavailable_error()
    blend_on_disk = manager.store.path_for(source_id, ".blend").exists()
    path, notes = choose_path(record, requested, blend_on_disk, link.snapshot.blender_version)
    opened = await manager.open(
        name=name, restored_from=source_id, data=record.data.data, blender=link.endpoint
    )
    new_id = opened.session_id
    created: list[str] = []
    updated: list[str] = []
    removed: list[str] = []
    skipped: list[SkippedObject] = []
    if path == "blend":
        working = await manager.store.copy_snapshot(
            source_id, manager.store.working_copy_path(new_id)
        )
        await manager.command(
            new_id, "open_blend", msgspec.Raw(_encoder.encode({"path": str(working)})), client_id
        )
        state = await manager.state(new_id)
        created = [o.name for o in _state_decoder.decode(state.scene).objects]
        notes.append(f"opened a copy of the .blend snapshot: {working}")
    elif path == "state":
        snapshot = _apply_state_decoder.decode(record.data.state.scene)
        params = _encoder.encode(msgspec.structs.replace(snapshot, prune=True))
        done = await manager.command(new_id, "apply_state", msgspec.Raw(params), client_id)
        applied = _apply_result_decoder.decode(done.result)
        created, updated, removed, skipped = (
            applied.created,
            applied.updated,
            applied.removed,
            applied.skipped,
        )
    else:
        skipped = await _replay(manager, new_id, record, client_id)
        state = await manager.state(new_id)
        created = [o.name for o in _state_decoder.decode(state.scene).objects]
    log.info(
        "session_restored",
        session_id=new_id,
        restored_from=source_id,
        path=path,
        skipped=len(skipped),
    )
    return RestoreResult(
        session_id=new_id,
        restored_from=source_id,
        path=path,
        created=created,
        updated=updated,
        removed=removed,
        skipped=skipped,
        notes=notes,
    )


async def _replay(
    manager: SessionManager, session_id: str, record: SessionRecord, client_id: str | None
) -> list[SkippedObject]:
    """Start from an empty scene and send the recorded scene commands again."""
    skipped: list[SkippedObject] = []
    empty = _encoder.encode({"objects": [], "prune": True})
    await manager.command(session_id, "apply_state", msgspec.Raw(empty), client_id)
    for command in record.data.commands:
        label = f"#{command.seq} {command.type}"
        if command.status != "success" or command.housekeeping:
            continue
        if command.type in NOT_REPLAYED:
            skipped.append(SkippedObject(name=label, reason=NOT_REPLAYED[command.type]))
            continue
        if command.type not in REPLAYED:
            continue
        try:
            await manager.command(session_id, command.type, command.params, client_id)
        except RemoteProtocolError as error:
            skipped.append(SkippedObject(name=label, reason=f"{error.code}: {error.message}"))
    return skipped
