"""One open session in memory: identity, counters, the tracked scene state, and the
journal that holds its history. No sockets, no files of its own."""

from __future__ import annotations

import time
from collections import deque

import msgspec
import trio

from .link import AddonLink
from .protocol import DECODE_ERRORS
from .protocol.messages import NULL, ObjectRecord, SceneInfo, SceneState
from .store import (
    BlenderInfo,
    CommandRecord,
    JournalWriter,
    LastResult,
    SessionData,
    SessionState,
    SnapshotInfo,
)

# How many recent commands an open session keeps in memory for `show`; the whole
# history lives in the journal, so memory does not grow with the command count.
RECENT_COMMANDS_KEPT = 50

_object_decoder = msgspec.json.Decoder(ObjectRecord)
_scene_info_decoder = msgspec.json.Decoder(SceneInfo)
_scene_state_decoder = msgspec.json.Decoder(SceneState)


class _Selection(msgspec.Struct):
    selection: list[str] = []
    active: str | None = None


_selection_decoder = msgspec.json.Decoder(_Selection)

# Commands whose effect on the object list cannot be read from their result: after
# them the daemon asks Blender for get_scene_info.
OPAQUE_COMMANDS = frozenset({"apply_state", "open_blend", "execute_code"})


class Session:
    def __init__(
        self,
        data: SessionData,
        link: AddonLink,
        journal: JournalWriter,
        *,
        next_seq: int = 1,
        recent: list[CommandRecord] | None = None,
    ) -> None:
        self.session_id = data.session_id
        self.name = data.name
        self.created_at = data.created_at
        self.last_activity = data.last_activity
        self.restored_from = data.restored_from
        self.command_count = data.command_count
        self.data = dict(data.data)
        self.snapshot = data.snapshot
        self.link = link
        self.journal = journal
        self.next_seq = next_seq
        # An ordered set (dict keys): membership is O(1) with 10,000 objects.
        self.objects: dict[str, None] = dict.fromkeys(data.state.objects)
        self.selection = data.state.selection
        self.last_command = data.state.last_command
        self.last_result = data.state.last_result
        self.scene: msgspec.Raw = data.state.scene
        self.recent: deque[CommandRecord] = deque(recent or (), maxlen=RECENT_COMMANDS_KEPT)
        # Commands whose outcome the journal could not take (disk full): close adds them.
        self.unjournaled: dict[int, CommandRecord] = {}
        self.closing = False
        self.last_active_at = trio.current_time()  # for the idle TTL (trio clock)
        self.in_flight = 0
        self.idle = trio.Event()
        self.idle.set()

    def take_seq(self) -> int:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return seq

    def begin(self) -> None:
        self.last_active_at = trio.current_time()
        self.in_flight += 1
        self.idle = trio.Event() if self.in_flight == 1 else self.idle

    def end(self) -> None:
        self.last_active_at = trio.current_time()
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    # --- state tracking -------------------------------------------------------------

    def record(self, command: CommandRecord) -> None:
        self.recent.append(command)
        self.last_activity = time.time()
        if command.housekeeping:
            return
        self.command_count += 1
        self.last_activity = time.time()
        self.last_command = command.type
        if command.error is not None:
            self.last_result = LastResult(
                status="error", code=command.error.code, message=command.error.message
            )
        else:
            self.last_result = LastResult(status=command.status)

    def track(self, type: str, params: msgspec.Raw, result: bytes) -> None:
        """Update the tracked object list and selection from a successful result."""
        match type:
            case "create_object" | "transform_object" | "set_material" | "get_object_info":
                name = _object_decoder.decode(result).name
                self.objects.setdefault(name)
            case "rename_object":
                old = msgspec.json.decode(params, type=dict[str, str]).get("name")
                new = _object_decoder.decode(result).name
                self.objects = {(new if item == old else item): None for item in self.objects}
                if self.selection == old:
                    self.selection = new
            case "delete_object":
                deleted = msgspec.json.decode(result, type=dict[str, str]).get("deleted")
                if deleted is not None:
                    self.objects.pop(deleted, None)
                if self.selection == deleted:
                    self.selection = None
            case "select_objects":
                chosen = _selection_decoder.decode(result)
                self.selection = chosen.active or (
                    chosen.selection[0] if chosen.selection else None
                )
            case "get_scene_info":
                self.track_scene_info(result)
            case "get_state":
                self.track_state(result)

    def track_scene_info(self, result: bytes) -> None:
        info = _scene_info_decoder.decode(result)
        self.objects = dict.fromkeys(item.name for item in info.objects)
        self.selection = info.active or (info.selection[0] if info.selection else None)

    def track_state(self, result: bytes) -> None:
        state = _scene_state_decoder.decode(result)
        self.objects = dict.fromkeys(item.name for item in state.objects)
        self.selection = state.active or (state.selection[0] if state.selection else None)
        self.scene = msgspec.Raw(result)

    def track_scene_event(self, data: msgspec.Raw) -> None:
        """A scene_changed event carries the object names, selection and active object."""
        try:
            chosen = msgspec.json.decode(data, type=_SceneEvent)
        except DECODE_ERRORS:
            return
        if chosen.objects is not None:
            self.objects = dict.fromkeys(chosen.objects)
            self.selection = chosen.active or (chosen.selection[0] if chosen.selection else None)

    # --- records --------------------------------------------------------------------

    def apply_state_record(self, state: SessionState) -> None:
        """Take the tracked state from a journal line (recovery)."""
        self.objects = dict.fromkeys(state.objects)
        self.selection = state.selection

    def journal_state(self) -> SessionState:
        """The tracked state without the scene snapshot (that is in get_state results)."""
        return SessionState(objects=list(self.objects), selection=self.selection)

    def state_record(self) -> SessionState:
        return SessionState(
            objects=list(self.objects),
            selection=self.selection,
            last_command=self.last_command,
            last_result=self.last_result,
            scene=self.scene,
        )

    def to_data(
        self, commands: list[CommandRecord], *, closed_at: float | None = None
    ) -> SessionData:
        return SessionData(
            session_id=self.session_id,
            name=self.name,
            created_at=self.created_at,
            last_activity=self.last_activity,
            closed_at=closed_at,
            blender=blender_info(self.link),
            state=self.state_record(),
            command_count=self.command_count,
            restored_from=self.restored_from,
            snapshot=self.snapshot,
            commands=commands,
            data=self.data,
        )


class _SceneEvent(msgspec.Struct):
    objects: list[str] | None = None
    selection: list[str] = []
    active: str | None = None


def blender_info(link: AddonLink) -> BlenderInfo:
    """The record's `blender` block: what is true of the link right now."""
    snap = link.snapshot
    return BlenderInfo(
        connected=link.connected,
        host=link.config.host,
        port=link.config.port,
        last_heartbeat=snap.last_heartbeat,
        version=snap.blender_version,
        file=snap.file,
    )


def new_session_data(
    session_id: str, name: str | None, link: AddonLink, restored_from: str | None
) -> SessionData:
    now = time.time()
    return SessionData(
        session_id=session_id,
        name=name,
        created_at=now,
        last_activity=now,
        closed_at=None,
        blender=blender_info(link),
        state=SessionState(scene=NULL),
        command_count=0,
        restored_from=restored_from,
        snapshot=None,
        commands=[],
    )


__all__ = ["OPAQUE_COMMANDS", "Session", "SnapshotInfo", "new_session_data"]
