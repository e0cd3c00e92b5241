"""blender-scene-sessions: the addon inside Blender.

Installs as a Blender 4.2+ extension (blender_manifest.toml) and as a legacy addon
(bl_info) from this one tree. Importing this package does not import bpy: the
framing, queue and server modules are plain Python, testable without Blender;
register() loads the Blender side.
"""

bl_info = {
    "name": "Blender Scene Sessions",
    "author": "blender-scene-sessions",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "View3D > Sidebar > Sessions",
    "description": "Serve scene commands to the blender-sessiond daemon and blender-mcp clients",
    "category": "Interface",
}


def register() -> None:
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
