"""The addon at run time inside one Blender: server, queue, timer or pump, handlers.

Two ways to drive the main thread:
- timer: a persistent `bpy.app.timers` timer drains the queue on every tick (GUI
  Blender; here it ticked every ~5 ms at about 1.5% CPU when idle);
- pump: `pump_until()` blocks on the queue with a short timeout (bpy module,
  `blender -b`, where timers never fire).
"""

from __future__ import annotations

import threading
import time

import bpy
from bpy.app.handlers import persistent

from . import commands
from .edits import EditWatcher
from .mainthread import GUI_DRAIN_BUDGET_S, GUI_LINGER_S, MainThreadQueue
from .server import AddonServer, SceneFacts, ServerSettings
from .vocabulary import READ_ONLY_COMMANDS, JSONObject

ADDON_VERSION = "0.1.0"
# scene_changed events are coalesced: at most one per connection per this interval,
# so dragging an object in the viewport does not flood the link.
EVENT_COALESCE_S = 0.1
# The pump's blocking wait for work: short enough to notice a stop request quickly,
# long enough that an idle Blender does not spin.
PUMP_WAIT_S = 0.05


class Runtime:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.queue = MainThreadQueue()
        self.facts = SceneFacts(addon_version=ADDON_VERSION, commands=sorted(commands.COMMANDS))
        self.server = AddonServer(settings, self.queue, self._dispatch, self.facts)
        self.edits = EditWatcher(self.server.publish, self._edits_watched)
        self.mode: str | None = None
        self._scene_dirty = False
        self._drawn_ping: float | None = None  # the heartbeat the panel last showed
        self._last_event_at = 0.0

    # Runs on: main thread.
    def start(self, mode: str) -> int:
        commands.configure(self.settings.allow_execute_code)
        self.refresh_facts()
        port = self.server.start()
        self.mode = mode
        _install_handlers()
        if mode == "timer" and not bpy.app.timers.is_registered(_tick):
            bpy.app.timers.register(_tick, first_interval=0.0, persistent=True)
        return port

    # Runs on: main thread.
    def stop(self) -> None:
        if bpy.app.timers.is_registered(_tick):
            bpy.app.timers.unregister(_tick)
        _remove_handlers()
        self.server.stop()
        self.mode = None

    def pump_until(self, stop: threading.Event) -> None:
        """Drive the main thread where timers never fire. Runs on: main thread."""
        while not stop.is_set():
            commands.scene_index.forget()  # references live for one drain only
            self.queue.drain(wait_s=PUMP_WAIT_S)
            self.edits.tick()
            self.maybe_send_scene_event()

    def tick(self) -> float:
        """The timer callback. Runs on: main thread."""
        commands.scene_index.forget()  # references live for one drain only
        self.queue.drain(budget_s=GUI_DRAIN_BUDGET_S, linger_s=GUI_LINGER_S)
        self.edits.tick()
        self.maybe_send_scene_event()
        self._redraw_panel_on_heartbeat()
        return 0.0

    def _redraw_panel_on_heartbeat(self) -> None:
        """The sidebar shows the last heartbeat's age: redraw the 3D views when one
        comes (about once a second), not only when the mouse moves over them."""
        pinged = self.server.last_ping_at
        if pinged == self._drawn_ping:
            return
        self._drawn_ping = pinged
        manager = bpy.context.window_manager
        for window in manager.windows if manager is not None else ():
            for area in window.screen.areas:
                if area.type == "VIEW_3D":
                    area.tag_redraw()

    def _dispatch(self, kind: str, params: JSONObject, by_watcher: bool) -> object:
        mutating = kind not in READ_ONLY_COMMANDS
        result = self.edits.around_command(
            kind,
            params,
            lambda: commands.dispatch(kind, params),
            by_watcher=by_watcher,
            mutating=mutating,
            gui=self.mode == "timer",
        )
        if mutating:
            self._scene_dirty = True
            self.refresh_facts()
        return result

    def _edits_watched(self) -> bool:
        return self.server.has_subscribers("scene_edited")

    def refresh_facts(self) -> None:
        """Runs on: main thread."""
        self.facts.blender_version = bpy.app.version_string
        self.facts.file = bpy.data.filepath
        scene = getattr(bpy.context, "scene", None)
        self.facts.scene = scene.name if scene is not None else ""

    def mark_scene_dirty(self) -> None:
        self._scene_dirty = True

    def maybe_send_scene_event(self) -> None:
        """Runs on: main thread."""
        if not self._scene_dirty:
            return
        now = time.monotonic()
        if now - self._last_event_at < EVENT_COALESCE_S:
            return
        self._scene_dirty = False
        self._last_event_at = now
        if not self.server.has_subscribers("scene_changed"):
            return
        scene, view_layer = bpy.context.scene, bpy.context.view_layer
        if scene is None or view_layer is None:  # a file is loading: the next tick sends it
            self._scene_dirty = True
            return
        objects = list(scene.objects)
        active = view_layer.objects.active
        self.server.publish(
            "scene_changed",
            {
                "scene": scene.name,
                "frame": scene.frame_current,
                "objects": [o.name for o in objects],
                "selection": [o.name for o in objects if o.select_get()],
                "active": active.name if active is not None else None,
            },
        )


_runtime: Runtime | None = None


def current() -> Runtime | None:
    return _runtime


def start(settings: ServerSettings, mode: str) -> Runtime:
    """Start the addon's server (stopping a running one first). Runs on: main thread."""
    global _runtime
    stop()
    runtime = Runtime(settings)
    runtime.start(mode)
    _runtime = runtime
    return runtime


def stop() -> None:
    """Stop the server if it runs; safe to call twice. Runs on: main thread."""
    global _runtime
    if _runtime is not None:
        runtime, _runtime = _runtime, None
        runtime.stop()


# Module-level callbacks, so the same function objects can be unregistered again.


def _tick() -> float | None:
    runtime = _runtime
    if runtime is None:
        return None  # unregisters the timer
    return runtime.tick()


@persistent  # type: ignore[untyped-decorator]  # bpy.app.handlers.persistent is untyped
def _on_depsgraph_update(
    scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph | None = None
) -> None:
    if _runtime is not None:
        _runtime.mark_scene_dirty()
        _runtime.edits.depsgraph_updated(depsgraph)


@persistent  # type: ignore[untyped-decorator]  # bpy.app.handlers.persistent is untyped
def _on_load_post(*args: object) -> None:
    if _runtime is not None:
        _runtime.refresh_facts()
        _runtime.mark_scene_dirty()


def _install_handlers() -> None:
    for handlers, callback in (
        (bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update),
        (bpy.app.handlers.load_post, _on_load_post),
    ):
        if callback not in handlers:
            handlers.append(callback)


def _remove_handlers() -> None:
    for handlers, callback in (
        (bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update),
        (bpy.app.handlers.load_post, _on_load_post),
    ):
        while callback in handlers:
            handlers.remove(callback)
