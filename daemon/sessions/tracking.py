"""The scene as a session tracks it between snapshots: the object names in order, the
selected/active object, and the last full `get_state` snapshot. Updated from each
successful command's result, from scene reads after opaque commands, and from the
addon's `scene_changed` events. Pure: no I/O.

A `get_scene_info` result (the commonest command, and the scene read after every
opaque one) is kept as it came and read only when the tracked scene is next needed:
a stream of them costs one decode, not one each.
"""

from __future__ import annotations

import msgspec
import structlog

from ..protocol import DECODE_ERRORS
from ..protocol.messages import NULL
from ..protocol.scene import (
    DeletedResult,
    ObjectRecord,
    RenameObjectParams,
    SceneInfo,
    SceneState,
    SelectionResult,
)
from ..store import LastResult, SessionState

_object_decoder = msgspec.json.Decoder(ObjectRecord)
_deleted_decoder = msgspec.json.Decoder(DeletedResult)
_selection_decoder = msgspec.json.Decoder(SelectionResult)
_rename_decoder = msgspec.json.Decoder(RenameObjectParams)
_scene_info_decoder = msgspec.json.Decoder(SceneInfo)
_scene_state_decoder = msgspec.json.Decoder(SceneState)


class _SceneEvent(msgspec.Struct):
    objects: list[str] | None = None
    selection: list[str] = []
    active: str | None = None


_scene_event_decoder = msgspec.json.Decoder(_SceneEvent)
log = structlog.get_logger("sessions")


class SceneTracker:
    def __init__(self, state: SessionState) -> None:
        # An ordered set (dict keys): membership is O(1) with 10,000 objects.
        self._objects: dict[str, None] = dict.fromkeys(state.objects)
        self._selection = state.selection
        self._scene_info: bytes | None = None  # the newest get_scene_info, not read yet
        self.scene: msgspec.Raw = state.scene

    @property
    def objects(self) -> dict[str, None]:
        self._read_scene_info()
        return self._objects

    @property
    def selection(self) -> str | None:
        self._read_scene_info()
        return self._selection

    def track(self, type: str, params: msgspec.Raw, result: bytes) -> None:
        """Update from a successful command's result. Raises msgspec errors for a
        result that does not have the command's shape."""
        if type == "get_scene_info":
            self.track_scene_info(result)
            return
        self._read_scene_info()
        match type:
            case "create_object" | "transform_object" | "set_material" | "get_object_info":
                self._objects.setdefault(_object_decoder.decode(result).name)
            case "rename_object":
                old = _rename_decoder.decode(params).name
                new = _object_decoder.decode(result).name
                self._objects = {(new if item == old else item): None for item in self._objects}
                if self._selection == old:
                    self._selection = new
            case "delete_object":
                deleted = _deleted_decoder.decode(result).deleted
                self._objects.pop(deleted, None)
                if self._selection == deleted:
                    self._selection = None
            case "select_objects":
                chosen = _selection_decoder.decode(result)
                self._selection = chosen.active or (
                    chosen.selection[0] if chosen.selection else None
                )
            case "get_state":
                self.track_state(result)

    def track_scene_info(self, result: bytes) -> None:
        """Kept as it came; read when the tracked scene is next needed."""
        self._scene_info = result

    def _read_scene_info(self) -> None:
        result, self._scene_info = self._scene_info, None
        if result is None:
            return
        try:
            info = _scene_info_decoder.decode(result)
        except DECODE_ERRORS as error:  # not the shape of a scene: keep what was tracked
            log.warning("state_tracking_failed", type="get_scene_info", reason=str(error))
            return
        self._objects = dict.fromkeys(item.name for item in info.objects)
        self._selection = info.active or (info.selection[0] if info.selection else None)

    def track_state(self, result: bytes) -> None:
        state = _scene_state_decoder.decode(result)
        self._scene_info = None
        self._objects = dict.fromkeys(item.name for item in state.objects)
        self._selection = state.active or (state.selection[0] if state.selection else None)
        self.scene = msgspec.Raw(result)

    def track_scene_event(self, data: msgspec.Raw) -> None:
        """A scene_changed event carries the object names, selection and active object."""
        chosen = _scene_event_decoder.decode(data)
        if chosen.objects is not None:
            self._scene_info = None
            self._objects = dict.fromkeys(chosen.objects)
            self._selection = chosen.active or (chosen.selection[0] if chosen.selection else None)

    def track_edit(self, objects: list[msgspec.Raw], removed: list[str]) -> None:
        """A change made beside the daemon: records of objects added or changed, and
        the names of those removed. Raises msgspec errors for a record of another shape."""
        self._read_scene_info()
        for record in objects:
            self._objects.setdefault(_object_decoder.decode(record).name)
        for name in removed:
            self._objects.pop(name, None)
            if self._selection == name:
                self._selection = None

    def restore(self, state: SessionState) -> None:
        """Take the tracked state from a journal line (recovery)."""
        self._scene_info = None
        self._objects = dict.fromkeys(state.objects)
        self._selection = state.selection

    def session_state(
        self, last_command: str | None, last_result: LastResult | None
    ) -> SessionState:
        """The record's `state`: what is tracked, and the last command's outcome."""
        return SessionState(
            objects=list(self.objects),
            selection=self.selection,
            last_command=last_command,
            last_result=last_result,
            scene=self.scene,
        )

    def journal_state(self) -> SessionState:
        """The tracked state without the scene snapshot (that is in get_state results)."""
        return SessionState(objects=list(self.objects), selection=self.selection, scene=NULL)
