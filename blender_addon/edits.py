"""Changes made beside the daemon, reported as `scene_edited` events so the daemon can
put them in the session's history: the records of the objects added or changed, and
the names of the ones removed.

The daemon is the connection subscribed to `scene_edited`; anything else that
changes the scene is "beside" it:
- another client's command (straight to this addon): the scene's records are read
  before and after it, and the difference is reported at once (`source: client`);
- a person in the GUI: Blender's depsgraph handler names the objects that changed
  outside any command; the edits are gathered and reported once they pause for
  EDIT_COALESCE_S, or before the daemon's next command, whichever comes first
  (`source: gui`). Removed objects are found by the names the scene had when last
  seen (refreshed after every drain of commands).

Runs on: main thread (all of it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import bpy

from .snapshot import active_scene, object_record
from .vocabulary import JSONObject

EVENT = "scene_edited"
EDIT_COALESCE_S = 0.1

Publish = Callable[[str, JSONObject], None]


class EditWatcher:
    def __init__(self, publish: Publish, watched: Callable[[], bool]) -> None:
        self._publish = publish
        self._watched = watched  # is anybody subscribed?
        self.in_command = False
        self._pending: set[str] = set()  # objects edited in the GUI, not yet reported
        self._pending_since = 0.0
        self._names: set[str] | None = None  # the scene's object names when last seen
        self._names_stale = True

    # --- commands -----------------------------------------------------------------------

    def around_command(
        self,
        kind: str,
        params: JSONObject,
        run: Callable[[], object],
        *,
        by_watcher: bool,
        mutating: bool,
        gui: bool,
    ) -> object:
        """Run one command. Depsgraph updates while it runs are never GUI edits.
        Another client's command that may change the scene is reported as an edit;
        before one of the daemon's, GUI edits made so far are reported first. In a GUI
        Blender (`gui`) a command that may change the scene is one undo step named
        after it (Ctrl-Z undoes one command), and its updates are evaluated inside it,
        so the handler sees them while it runs, not at the next redraw."""
        undo_step = kind if mutating and gui else None
        if not mutating or not self._watched():
            return self._inside(run, undo_step)
        self.flush_gui_edits()
        if not by_watcher:
            return self._foreign(kind, params, run, undo_step)
        try:
            return self._inside(run, undo_step)
        finally:
            self._names_stale = True

    def _inside(self, run: Callable[[], object], undo_step: str | None) -> object:
        self.in_command = True
        try:
            result = run()
            if undo_step is not None:
                _push_undo(undo_step)
            return result
        finally:
            self.in_command = False

    def _foreign(
        self, kind: str, params: JSONObject, run: Callable[[], object], undo_step: str | None
    ) -> object:
        """Another client's command, and the edit it made. A command whose result says
        what it changed is reported from its result; any other (apply_state,
        execute_code, open_blend) by reading the scene's records before and after
        (that costs time in proportion to the scene, twice)."""
        if kind in _SAID_BY_RESULT:
            result = self._inside(run, undo_step)
            objects, removed = _edit_from_result(kind, params, result)
            if objects or removed:
                self._publish(EVENT, {"source": "client", "objects": objects, "removed": removed})
            self._names_stale = True
            return result
        before = _records()
        try:
            return self._inside(run, undo_step)
        finally:
            after = _records()
            changed = [r for name, r in after.items() if before.get(name) != r]
            removed = sorted(set(before) - set(after))
            if changed or removed:
                self._publish(EVENT, {"source": "client", "objects": changed, "removed": removed})
            self._names = set(after)
            self._names_stale = False

    # --- the GUI ------------------------------------------------------------------------

    def depsgraph_updated(self, depsgraph: bpy.types.Depsgraph | None) -> None:
        if self.in_command or depsgraph is None or not self._watched():
            return
        names = {
            (update.id.original or update.id).name
            for update in depsgraph.updates
            if isinstance(update.id, bpy.types.Object)
        }
        if not names and not self._maybe_removed():
            return
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending |= names or {""}  # "" stands for "something was removed"

    def _maybe_removed(self) -> bool:
        scene = getattr(bpy.context, "scene", None)
        return (
            self._names is not None and scene is not None and len(scene.objects) < len(self._names)
        )

    def tick(self) -> None:
        """After a drain: report GUI edits that paused, and see the scene's names."""
        if self._pending and time.monotonic() - self._pending_since >= EDIT_COALESCE_S:
            self.flush_gui_edits()
        elif self._names_stale and self._watched():
            self._names = _names()
            self._names_stale = False

    def flush_gui_edits(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, set()
        scene = active_scene()
        objects = scene.objects
        changed = [object_record(objects[name]) for name in sorted(pending) if name in objects]
        now = set(objects.keys())
        removed = sorted(self._names - now) if self._names is not None else []
        self._names, self._names_stale = now, False
        if changed or removed:
            self._publish(EVENT, {"source": "gui", "objects": changed, "removed": removed})


# Commands whose result is the changed object's record (or names what went): their
# edit needs no scene read. `select_objects` changes no record.
_RECORD_RESULTS = frozenset({"create_object", "transform_object", "set_material", "rename_object"})
_SAID_BY_RESULT = _RECORD_RESULTS | {"delete_object", "select_objects"}


def _edit_from_result(
    kind: str, params: JSONObject, result: object
) -> tuple[list[JSONObject], list[str]]:
    if not isinstance(result, dict):
        return [], []
    if kind in _RECORD_RESULTS:
        renamed = params.get("name") if kind == "rename_object" else None
        gone = [renamed] if isinstance(renamed, str) and renamed != result.get("name") else []
        return [result], gone
    deleted = result.get("deleted") if kind == "delete_object" else None
    return [], [deleted] if isinstance(deleted, str) else []


def _push_undo(message: str) -> None:
    """Evaluate the scene (its depsgraph updates fire now) and make it an undo step."""
    view_layer = getattr(bpy.context, "view_layer", None)
    if view_layer is not None:
        view_layer.update()
    # No undo here (a file is loading, say): the command still ran.
    with contextlib.suppress(RuntimeError):
        bpy.ops.ed.undo_push(message=f"Sessions: {message}")


def _names() -> set[str]:
    return set(active_scene().objects.keys())


def _records() -> dict[str, JSONObject]:
    return {obj.name: object_record(obj) for obj in active_scene().objects}
