"""Preferences, the 3D view sidebar panel and its operators. Runs on: main thread.

Buttons that talk to the daemon do it on a worker thread (see daemon_client) and
leave their outcome in `panel_state` for the panel to show.
"""

from __future__ import annotations

import contextlib
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import daemon_client, runtime
from .preferences import BSS_Preferences, prefs, settings_from_prefs
from .vocabulary import JSONObject

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems

    Finished = set[OperatorReturnItems]


@dataclass
class PanelState:
    """What the panel shows of the buttons' work; written by worker threads."""

    message: str = ""
    sessions: list[JSONObject] = field(default_factory=list)
    steps: list[JSONObject] = field(default_factory=list)  # the attached session's last ones
    busy: bool = False


panel_state = PanelState()


class BSS_OT_start_server(bpy.types.Operator):
    bl_idname = "bss.start_server"
    bl_label = "Start server"
    bl_description = "Listen for the daemon and clients on the configured port"

    def execute(self, context: bpy.types.Context) -> Finished:
        try:
            runtime.start(settings_from_prefs(), "timer")
        except OSError as error:
            self.report({"ERROR"}, f"Cannot start the server: {error}")
            return {"CANCELLED"}
        return {"FINISHED"}


class BSS_OT_stop_server(bpy.types.Operator):
    bl_idname = "bss.stop_server"
    bl_label = "Stop server"

    def execute(self, context: bpy.types.Context) -> Finished:
        runtime.stop()
        return {"FINISHED"}


def _in_background(
    work: Callable[[], JSONObject], done_message: Callable[[JSONObject], str]
) -> None:
    """Run `work` on a worker thread; its outcome lands in the panel's message."""
    if panel_state.busy:
        panel_state.message = "still working on the last button; try again"
        return
    panel_state.busy = True
    panel_state.message = "working..."

    def run() -> None:
        try:
            panel_state.message = done_message(work())
        except daemon_client.DaemonError as error:
            panel_state.message = str(error)
        finally:
            panel_state.busy = False

    threading.Thread(target=run, name="bss-daemon-call", daemon=True).start()


def _daemon(op: str, params: JSONObject | None = None) -> JSONObject:
    """An op of the daemon linked to this Blender: its data dir as it told the addon,
    else the environment's or the default one. Runs on: a worker thread."""
    current = runtime.current()
    told = current.server.daemon_data_dir if current is not None else None
    return daemon_client.call(op, params, data_dir=Path(told) if told else None)


def _attached_session() -> str | None:
    current = runtime.current()
    return current.server.session_id if current is not None else None


class _SessionButton(bpy.types.Operator):
    """A button that asks the daemon something about the attached session, on a
    worker thread (`work`), and shows the answer (`said`) in the panel. Both are
    static: the operator itself may be gone (and bpy is main-thread only) by then."""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _attached_session() is not None

    def execute(self, context: bpy.types.Context) -> Finished:
        session_id = _attached_session()
        if session_id is None:
            return {"CANCELLED"}
        work, said = type(self).work, type(self).said
        _in_background(lambda: work(session_id), said)
        return {"FINISHED"}

    @staticmethod
    def work(session_id: str) -> JSONObject:
        raise NotImplementedError

    @staticmethod
    def said(result: JSONObject) -> str:
        raise NotImplementedError


class BSS_OT_close_session(_SessionButton):
    bl_idname = "bss.close_session"
    bl_label = "Close and save session"
    bl_description = "Ask the daemon to take a final snapshot and save this session"

    @staticmethod
    def work(session_id: str) -> JSONObject:
        return _daemon("session.close", {"session_id": session_id})

    @staticmethod
    def said(result: JSONObject) -> str:
        return f"saved to {result.get('path')}"


class _Dialog(bpy.types.Operator):
    """An operator that asks for its properties in a dialog first."""

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> Finished:
        window_manager = context.window_manager
        if window_manager is None:
            return {"CANCELLED"}
        return window_manager.invoke_props_dialog(self)


class BSS_OT_open_session(_Dialog):
    bl_idname = "bss.open_session"
    bl_label = "Open session"
    bl_description = "Start recording this Blender's scene in a new session"

    if TYPE_CHECKING:
        name: str
    else:
        name: StringProperty(name="Name", description="Optional; a session can be found by it")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runtime.current() is not None and _attached_session() is None

    def execute(self, context: bpy.types.Context) -> Finished:
        current = runtime.current()
        if current is None:
            return {"CANCELLED"}
        params = {"name": self.name.strip() or None, "blender": str(current.server.port)}
        _in_background(
            lambda: _daemon("session.open", params),
            lambda result: f"opened {result.get('session_id')}",
        )
        return {"FINISHED"}


# The restore list: the newest saved sessions, each with the path a restore would take.
RESTORE_LIST = 10


class BSS_OT_refresh_sessions(bpy.types.Operator):
    bl_idname = "bss.refresh_sessions"
    bl_label = "Refresh list"
    bl_description = "List the newest saved sessions and how each would be restored"

    def execute(self, context: bpy.types.Context) -> Finished:
        def fetch() -> JSONObject:
            result = _daemon("session.list", {"status": "closed", "limit": RESTORE_LIST})
            sessions = list(result.get("sessions", []))  # newest first
            for session in sessions:
                try:
                    plan = _daemon(
                        "session.restore", {"session_id": session["session_id"], "dry_run": True}
                    )
                    session["restore_path"] = plan.get("path", "?")
                except daemon_client.DaemonError as error:
                    session["restore_path"] = f"cannot: {error}"
            panel_state.sessions = sessions
            return result

        _in_background(fetch, lambda result: f"{len(panel_state.sessions)} saved sessions")
        return {"FINISHED"}


def session_label(session: JSONObject) -> str:
    """A saved session as the restore list shows it: name first, date, size, path."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(session.get("closed_at") or 0))
    name = session.get("name") or session["session_id"]
    count = session.get("command_count", 0)
    return f"{name}  {when}  {count} cmds  via {session.get('restore_path', '?')}"


def _session_items(self: Any, context: bpy.types.Context | None) -> list[tuple[str, str, str]]:  # noqa: ANN401  # Blender's items callback signature
    items = [(s["session_id"], session_label(s), s["session_id"]) for s in panel_state.sessions]
    return items or [("", "(none)", "Refresh the list first")]


class BSS_OT_restore_session(_Dialog):
    bl_idname = "bss.restore_session"
    bl_label = "Restore session"
    bl_description = "Restore a saved session's scene into this Blender as a new session"

    if TYPE_CHECKING:
        session: str
    else:
        session: EnumProperty(name="Session", items=_session_items)

    def execute(self, context: bpy.types.Context) -> Finished:
        if not self.session:
            return {"CANCELLED"}
        session_id = self.session
        _in_background(lambda: _daemon("session.restore", {"session_id": session_id}), restored)
        return {"FINISHED"}


def restored(result: JSONObject) -> str:
    """Which path a restore took and why, for the panel."""
    notes = "; ".join(result.get("notes", []))
    return f"restored into {result.get('session_id')} via {result.get('path')}: {notes}"


# The panel lists this many of the attached session's last steps.
PANEL_STEPS = 8


def _fetch_steps(session_id: str) -> JSONObject:
    """The session's last steps (two calls: where it ends, then the end)."""
    last = _daemon("session.timeline", {"session_id": session_id, "limit": 1})
    after = max(int(last.get("last_seq", 0)) - PANEL_STEPS, 0)
    page = _daemon(
        "session.timeline", {"session_id": session_id, "after_seq": after, "limit": PANEL_STEPS}
    )
    entries = page.get("entries", [])
    panel_state.steps = [e for e in entries if e.get("kind") != "checkpoint"][-PANEL_STEPS:]
    return page


class BSS_OT_refresh_steps(_SessionButton):
    bl_idname = "bss.refresh_steps"
    bl_label = "Last steps"
    bl_description = "Show the attached session's last steps, to rewind to one"

    @staticmethod
    def work(session_id: str) -> JSONObject:
        return _fetch_steps(session_id)

    @staticmethod
    def said(result: JSONObject) -> str:
        return f"{result.get('last_seq', 0)} steps"


class BSS_OT_rewind(bpy.types.Operator):
    bl_idname = "bss.rewind"
    bl_label = "Rewind here"
    bl_description = (
        "Make the scene what it was right after this step (the daemon replays the "
        "session's history; nothing is deleted, and it can be rewound forward again)"
    )

    if TYPE_CHECKING:
        seq: int
    else:
        seq: IntProperty(name="Step", min=0)

    def execute(self, context: bpy.types.Context) -> Finished:
        session_id = _attached_session()
        if session_id is None:
            return {"CANCELLED"}
        seq = self.seq

        def rewind() -> JSONObject:
            result = _daemon("session.rewind", {"session_id": session_id, "to_seq": seq})
            _fetch_steps(session_id)
            return result

        _in_background(rewind, lambda result: f"rewound to step {result.get('to_seq')}")
        return {"FINISHED"}


def message_lines(message: str, width_px: int) -> list[str]:
    """The panel's message wrapped to its width (about 7 px a character), 8 lines at most."""
    return textwrap.wrap(message, max(20, width_px // 7))[:8]


class BSS_PT_sessions(bpy.types.Panel):
    bl_label = "Scene Sessions"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Sessions"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        if layout is None:
            return
        current = runtime.current()
        if current is None:
            layout.label(text="Server: stopped", icon="UNLINKED")
            layout.operator(BSS_OT_start_server.bl_idname, icon="PLAY")
            return
        server = current.server
        layout.label(text=f"Server: {server.settings.host}:{server.port}", icon="LINKED")
        layout.label(text=f"Clients: {server.connection_count()}")
        if server.session_id is None:
            layout.label(text="Session: (none attached)")
            layout.operator(BSS_OT_open_session.bl_idname, icon="ADD")
        elif server.session_name:
            layout.label(text=f"Session: {server.session_name}")
            layout.label(text=f"  {server.session_id}")
        else:
            layout.label(text=f"Session: {server.session_id}")
        if server.last_ping_at:
            layout.label(text=f"Last heartbeat: {time.time() - server.last_ping_at:.1f} s ago")
        layout.label(text=f"Commands run: {server.command_count}")
        layout.operator(BSS_OT_stop_server.bl_idname, icon="PAUSE")
        box = layout.box()
        box.operator(BSS_OT_close_session.bl_idname, icon="FILE_TICK")
        row = box.row()
        row.operator(BSS_OT_refresh_sessions.bl_idname, icon="FILE_REFRESH")
        row.operator(BSS_OT_restore_session.bl_idname, icon="RECOVER_LAST")
        steps = layout.box()
        steps.operator(BSS_OT_refresh_steps.bl_idname, icon="TIME")
        for step in panel_state.steps:
            row = steps.row()
            objects = ", ".join(step.get("objects", [])[:2])
            row.label(text=f"{step.get('seq')} {step.get('summary', '')} {objects}"[:60])
            button = row.operator(BSS_OT_rewind.bl_idname, text="", icon="LOOP_BACK")
            if button is not None:
                button.seq = int(step.get("seq", 0))
        region = context.region
        for line in message_lines(panel_state.message, region.width if region else 300):
            box.label(text=line)


CLASSES = (
    BSS_Preferences,
    BSS_OT_start_server,
    BSS_OT_stop_server,
    BSS_OT_open_session,
    BSS_OT_close_session,
    BSS_OT_refresh_sessions,
    BSS_OT_restore_session,
    BSS_OT_refresh_steps,
    BSS_OT_rewind,
    BSS_PT_sessions,
)


def _start_if_wanted() -> None:
    chosen = prefs()
    if chosen is not None and chosen.start_on_load and runtime.current() is None:
        try:
            runtime.start(settings_from_prefs(), "timer")
        except OSError as error:
            print(f"blender-scene-sessions: server not started: {error}")


def register() -> None:
    for cls in CLASSES:
        with contextlib.suppress(ValueError):  # already registered: register() is idempotent
            bpy.utils.register_class(cls)
    # The context is restricted while add-ons load; start once Blender is up.
    if not bpy.app.background:
        bpy.app.timers.register(_start_if_wanted, first_interval=0.1)


def unregister() -> None:
    runtime.stop()
    if bpy.app.timers.is_registered(_start_if_wanted):
        bpy.app.timers.unregister(_start_if_wanted)
    for cls in reversed(CLASSES):
        with contextlib.suppress(RuntimeError):  # not registered: unregister() is idempotent
            bpy.utils.unregister_class(cls)
