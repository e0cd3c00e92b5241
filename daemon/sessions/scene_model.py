"""The scene as object records, as the history says it was at any step, without
Blender: a checkpoint's get_state, then each later step's effect (a command's result,
an edit's records). What `diff` and the timeline's "objects touched" are computed
from. Pure: no I/O.

A command whose effect is not in its result (execute_code, apply_state, open_blend)
cannot be applied here; the checkpoint the daemon takes right after it can, so a
model that needs one of them starts from that checkpoint instead (timetravel.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgspec

from ..protocol import DECODE_ERRORS
from ..protocol.commands import OPAQUE_COMMANDS
from ..protocol.ops import DiffResult, FieldChange, ObjectChange, Renamed
from ..protocol.scene import (
    DeletedResult,
    ObjectRecord,
    RenameObjectParams,
    SceneState,
    SelectObjectsParams,
)
from ..store import CommandRecord, EditEntry

# Transforms compare equal within this (Blender stores 32-bit floats).
TOLERANCE = 1e-5
_record_decoder = msgspec.json.Decoder(ObjectRecord)
_state_decoder = msgspec.json.Decoder(SceneState)


class _Named(msgspec.Struct):
    """Any params that name one object (the rest of them is not read here)."""

    name: str


_deleted_decoder = msgspec.json.Decoder(DeletedResult)
_rename_decoder = msgspec.json.Decoder(RenameObjectParams)
_name_decoder = msgspec.json.Decoder(_Named)
_select_decoder = msgspec.json.Decoder(SelectObjectsParams)
_encoder = msgspec.json.Encoder()
_RECORDS = frozenset({"create_object", "transform_object", "set_material", "get_object_info"})


@dataclass
class SceneModel:
    objects: dict[str, ObjectRecord] = field(default_factory=dict)
    # Steps whose effect could not be applied (opaque, or a result of another shape).
    unknown: list[str] = field(default_factory=list)

    @classmethod
    def from_state(cls, state: bytes) -> SceneModel:
        """From a get_state result. Raises msgspec errors for another shape."""
        scene = _state_decoder.decode(state)
        return cls({record.name: record for record in scene.objects})

    def copy(self) -> SceneModel:
        return SceneModel(dict(self.objects), list(self.unknown))

    def apply(self, step: CommandRecord | EditEntry) -> None:
        """One step's effect on the objects."""
        try:
            if isinstance(step, EditEntry):
                for raw in step.objects:
                    record = _record_decoder.decode(raw)
                    self.objects[record.name] = record
                for name in step.removed:
                    self.objects.pop(name, None)
            elif step.status == "success" and not step.housekeeping:
                self._command(step)
            elif step.status == "unknown":
                self.unknown.append(f"#{step.seq} {step.type}: its outcome is unknown")
        except DECODE_ERRORS as error:
            self.unknown.append(f"#{step.seq}: its result cannot be read ({error})")

    def _command(self, command: CommandRecord) -> None:
        result = bytes(command.result)
        match command.type:
            case kind if kind in _RECORDS:
                record = _record_decoder.decode(result)
                self.objects[record.name] = record
            case "rename_object":
                self.objects.pop(_rename_decoder.decode(command.params).name, None)
                record = _record_decoder.decode(result)
                self.objects[record.name] = record
            case "delete_object":
                self.objects.pop(_deleted_decoder.decode(result).deleted, None)
            case "get_state":
                self.objects = SceneModel.from_state(result).objects
            case kind if kind in OPAQUE_COMMANDS:
                self.unknown.append(f"#{command.seq} {kind}: its effect is not in its result")


def touched(step: CommandRecord | EditEntry) -> list[str]:
    """The objects a step names (created, changed, renamed, removed, selected)."""
    try:
        if isinstance(step, EditEntry):
            return [_record_decoder.decode(raw).name for raw in step.objects] + step.removed
        match step.type:
            case "rename_object":
                renamed = _rename_decoder.decode(step.params)
                return [renamed.name, renamed.new_name]
            case "select_objects":
                return list(_select_decoder.decode(step.params).names)
            case "delete_object" | "transform_object" | "get_object_info":
                return [_name_decoder.decode(step.params).name]
            case "create_object" | "set_material" if step.status == "success":
                return [_record_decoder.decode(step.result).name]
    except DECODE_ERRORS:
        pass
    return []


def diff(before: dict[str, ObjectRecord], after: dict[str, ObjectRecord]) -> DiffResult:
    """What changed between two sets of objects: added, removed, renamed (the same
    object under a new name: every other field equal) and changed (each field's before
    and after; transforms within TOLERANCE are equal)."""
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    renamed: list[Renamed] = []
    candidates: dict[tuple[object, ...], list[str]] = {}  # linear, however many
    for name in added:
        candidates.setdefault(_rename_key(after[name]), []).append(name)
    for old in list(removed):
        same = candidates.get(_rename_key(before[old]), [])
        match = next((new for new in same if _same_but_name(before[old], after[new])), None)
        if match is not None:
            renamed.append(Renamed(from_name=old, to_name=match))
            removed.remove(old)
            added.remove(match)
            same.remove(match)
    changed = []
    for name in before:
        if name in after:
            fields = _field_changes(before[name], after[name])
            if fields:
                changed.append(ObjectChange(name=name, fields=fields))
    return DiffResult(
        added=[msgspec.Raw(_encoder.encode(after[name])) for name in added],
        removed=[msgspec.Raw(_encoder.encode(before[name])) for name in removed],
        renamed=renamed,
        changed=changed,
    )


_COMPARED = ("type", "data_kind", "light_type", "location", "rotation", "scale", "parent",
             "materials", "visible")  # fmt: skip
_VECTORS = frozenset({"location", "rotation", "scale"})


def _field_changes(old: ObjectRecord, new: ObjectRecord) -> dict[str, FieldChange]:
    changes: dict[str, FieldChange] = {}
    for name in _COMPARED:
        before, after = getattr(old, name), getattr(new, name)
        equal = _close(before, after) if name in _VECTORS else before == after
        if not equal:
            changes[name] = FieldChange(
                before=msgspec.Raw(_encoder.encode(before)),
                after=msgspec.Raw(_encoder.encode(after)),
            )
    return changes


def _rename_key(record: ObjectRecord) -> tuple[object, ...]:
    """Records equal but for their name share this key (vectors to 1e-3, coarser than
    TOLERANCE, so two within it never land apart unless they straddle a rounding edge)."""
    vectors = tuple(
        round(v, 3) + 0.0
        for name in ("location", "rotation", "scale")
        for v in getattr(record, name)
    )
    return (record.type, record.data_kind, record.parent, tuple(record.materials), vectors)


def _same_but_name(old: ObjectRecord, new: ObjectRecord) -> bool:
    return not _field_changes(old, new)


def _close(before: tuple[float, ...], after: tuple[float, ...]) -> bool:
    return all(math.isclose(a, b, abs_tol=TOLERANCE) for a, b in zip(before, after, strict=True))
