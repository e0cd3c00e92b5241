"""The scene as the history says it was, without Blender: object records, diffs, the
objects each step names, and the plan that brings any step back (nearest checkpoint,
the steps after it, rewinds followed). Pure, fast."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from daemon.protocol import ErrorCode, RemoteProtocolError
from daemon.protocol.scene import ObjectRecord
from daemon.sessions.history import Step
from daemon.sessions.scene_model import SceneModel, diff, touched
from daemon.sessions.timetravel import plan
from daemon.store import CheckpointInfo, CommandRecord, EditEntry, RewindEntry


def record(name: str, **fields: Any) -> ObjectRecord:
    base: dict[str, Any] = {
        "name": name,
        "type": "MESH",
        "location": (0, 0, 0),
        "rotation": (0, 0, 0),
        "scale": (1, 1, 1),
        "data_kind": "cube",
    }
    return ObjectRecord(**(base | fields))


def raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


def command(
    seq: int, type: str, params: object, result: object = None, **extra: Any
) -> CommandRecord:
    return CommandRecord(
        seq=seq, type=type, params=raw(params), status=extra.pop("status", "success"),
        started_at=0.0, duration_ms=1.0, client_id=None, result=raw(result), **extra,
    )  # fmt: skip


def test_diff_finds_added_removed_renamed_and_changed_fields() -> None:
    before = {r.name: r for r in [record("A"), record("B", location=(1, 2, 3)), record("C")]}
    after = {
        "A": record("A", location=(0, 0, 1e-6)),  # within the tolerance: unchanged
        "B2": record("B2", location=(1, 2, 3)),  # B renamed
        "D": record("D", data_kind="monkey"),
        "C": record("C", scale=(2, 1, 1), materials=["Gold"], parent="A"),
    }
    result = diff(before, after)
    assert [msgspec.json.decode(r)["name"] for r in result.added] == ["D"]
    assert result.removed == []
    assert [(r.from_name, r.to_name) for r in result.renamed] == [("B", "B2")]
    (changed,) = result.changed
    assert changed.name == "C" and sorted(changed.fields) == ["materials", "parent", "scale"]
    assert msgspec.json.decode(changed.fields["scale"].after) == [2, 1, 1]


def test_diff_of_ten_thousand_renames_is_linear() -> None:
    before = {f"O{n}": record(f"O{n}", location=(n, 0, 0)) for n in range(10_000)}
    after = {f"N{n}": record(f"N{n}", location=(n, 0, 0)) for n in range(10_000)}
    result = diff(before, after)
    assert len(result.renamed) == 10_000 and not result.added and not result.removed


def test_the_model_follows_commands_and_edits() -> None:
    model = SceneModel({"A": record("A")})
    model.apply(command(1, "create_object", {"kind": "cube", "name": "B"}, record("B")))
    model.apply(command(2, "rename_object", {"name": "A", "new_name": "Z"}, record("Z")))
    model.apply(command(3, "delete_object", {"name": "B"}, {"deleted": "B"}))
    model.apply(command(4, "delete_object", {"name": "Q"}, None, status="error"))
    model.apply(EditEntry(seq=5, at=0.0, source="gui", objects=[raw(record("E"))], removed=["Z"]))
    assert sorted(model.objects) == ["E"] and model.unknown == []
    model.apply(command(6, "execute_code", {"code": "pass"}, {"output": ""}))
    model.apply(command(7, "transform_object", {"name": "E"}, None, status="unknown"))
    assert len(model.unknown) == 2


def test_touched_names_the_objects_of_each_step() -> None:
    moved = command(1, "transform_object", {"name": "Seat", "location": [1, 2, 3]}, record("Seat"))
    assert touched(moved) == ["Seat"]
    renamed = command(2, "rename_object", {"name": "A", "new_name": "B"}, record("B"))
    assert touched(renamed) == ["A", "B"]
    edit = EditEntry(seq=3, at=0.0, source="client", objects=[raw(record("X"))], removed=["Y"])
    assert touched(edit) == ["X", "Y"]


class ListSteps:
    """A history in memory, as timetravel reads one."""

    session_id = "scene-20260101-000000-00000000"

    def __init__(self, steps: list[Step], checkpoints: list[int]) -> None:
        self.steps = steps
        self._checkpoints = {
            seq: CheckpointInfo(
                seq=seq, reason="open", taken_at=0.0, blend="", state="", bytes=0, duration_ms=0.0
            )
            for seq in checkpoints
        }

    def checkpoints(self) -> dict[int, CheckpointInfo]:
        return self._checkpoints

    async def page(self, after_seq: int, limit: int) -> tuple[list[Step], int | None]:
        found = [s for s in self.steps if s.seq is not None and s.seq > after_seq][:limit]
        more = found and found[-1].seq != self.last_seq
        return found, (found[-1].seq if more else None)

    @property
    def last_seq(self) -> int:
        return max((s.seq or 0) for s in self.steps)


def moves(*seqs: int) -> list[Step]:
    return [command(seq, "transform_object", {"name": "A"}, record("A")) for seq in seqs]


def rewind(seq: int, to_seq: int) -> RewindEntry:
    return RewindEntry(seq=seq, at=0.0, to_seq=to_seq, client_id=None, status="success",
                       base_seq=0, replayed=0, skipped=[], duration_ms=0.0)  # fmt: skip


async def test_a_plan_starts_at_the_nearest_checkpoint_and_follows_rewinds() -> None:
    # 1..5 moves; 6 rewinds to 2; 7, 8 moves; 9 rewinds to 7; 10 a move.
    history = [*moves(1, 2, 3, 4, 5), rewind(6, 2), *moves(7, 8), rewind(9, 7), *moves(10)]
    steps = ListSteps(history, checkpoints=[0, 4])
    found = await plan(steps, 5)
    assert found.base.seq == 4 and [s.seq for s in found.steps] == [5]
    found = await plan(steps, 10)  # 10 after 7 after 2: the checkpoint at 0, then 1, 2, 7, 10
    assert found.base.seq == 0 and [s.seq for s in found.steps] == [1, 2, 7, 10]
    assert found.exact


async def test_a_plan_says_what_it_cannot_redo() -> None:
    history = [*moves(1), command(2, "execute_code", {"code": "x"}, {}),
               command(3, "transform_object", {"name": "A"}, None, status="unknown")]  # fmt: skip
    found = await plan(ListSteps(history, checkpoints=[0]), 3)
    assert [s.seq for s in found.steps] == [1] and len(found.skipped) == 2 and not found.exact
    with pytest.raises(RemoteProtocolError) as missing:
        await plan(ListSteps(history, checkpoints=[]), 1)
    assert missing.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(RemoteProtocolError) as beyond:
        await plan(ListSteps(history, checkpoints=[0]), 4)
    assert beyond.value.code is ErrorCode.INVALID_PARAMS
