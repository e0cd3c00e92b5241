"""The addon's preferences (host, port, remote peers, execute_code, start on load) and
the server settings they give. Runs on: main thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from .server import ServerSettings

PACKAGE = __package__ or "blender_addon"


def prefs() -> BSS_Preferences | None:
    preferences = bpy.context.preferences
    addon = preferences.addons.get(PACKAGE) if preferences is not None else None
    prefs = addon.preferences if addon is not None else None
    return prefs if isinstance(prefs, BSS_Preferences) else None


def settings_from_prefs() -> ServerSettings:
    chosen = prefs()
    if chosen is None:
        return ServerSettings()
    return ServerSettings(
        host=chosen.host,
        port=chosen.port,
        allow_remote=chosen.allow_remote,
        allow_execute_code=chosen.allow_execute_code,
    )


class BSS_Preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    # Blender reads these class annotations as property definitions at run time.
    if TYPE_CHECKING:
        host: str
        port: int
        allow_remote: bool
        allow_execute_code: bool
        start_on_load: bool
    else:
        host: StringProperty(
            name="Host",
            default="127.0.0.1",
            description="Address to listen on; loopback unless remote peers are allowed",
        )
        port: IntProperty(name="Port", default=9876, min=1, max=65535)
        allow_remote: BoolProperty(
            name="Allow remote peers",
            default=False,
            description="Accept connections from other machines (unsafe)",
        )
        allow_execute_code: BoolProperty(
            name="Allow execute_code",
            default=False,
            description="Let clients run arbitrary Python in this Blender. Any local process "
            "could then do anything you can",
        )
        start_on_load: BoolProperty(name="Start server when Blender starts", default=True)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        row = layout.row()
        row.prop(self, "host")
        row.prop(self, "port")
        layout.prop(self, "start_on_load")
        layout.prop(self, "allow_remote")
        layout.prop(self, "allow_execute_code")
