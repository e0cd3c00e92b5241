"""Rendering the scene to a PNG with Workbench (the thumbnail, and blender-mcp's
screenshot when there is no viewport to draw), every setting it touches put back.

Every function here runs on: main thread.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import bpy
import mathutils

from . import snapshot


def render_png(width: int, height: int) -> bytes:
    scene = snapshot.active_scene()
    render = scene.render
    saved_engine = render.engine
    saved = (
        render.resolution_x,
        render.resolution_y,
        render.resolution_percentage,
        render.filepath,
        scene.camera,
    )
    temporary_camera = None
    fd, path = tempfile.mkstemp(suffix=".png", prefix="bss-thumb-")
    os.close(fd)
    try:
        if scene.camera is None:
            temporary_camera = framing_camera(scene)
            scene.camera = temporary_camera
        set_render_engine(render, "BLENDER_WORKBENCH")
        render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
        render.filepath = path
        bpy.ops.render.render(write_still=True)
        with open(path, "rb") as file:
            return file.read()
    finally:
        set_render_engine(render, saved_engine)
        (
            render.resolution_x,
            render.resolution_y,
            render.resolution_percentage,
            render.filepath,
            scene.camera,
        ) = saved
        if temporary_camera is not None:
            camera_data = temporary_camera.data
            bpy.data.objects.remove(temporary_camera, do_unlink=True)
            if isinstance(camera_data, bpy.types.Camera):
                bpy.data.cameras.remove(camera_data)
        with contextlib.suppress(OSError):
            os.unlink(path)


def set_render_engine(render: bpy.types.RenderSettings, engine: str) -> None:
    """The engine names vary by Blender version (the stubs know one set of them)."""
    setattr(render, "engine", engine)  # noqa: B010  # see the docstring


def framing_camera(scene: bpy.types.Scene) -> bpy.types.Object:
    data = bpy.data.cameras.new("bss-thumbnail-camera")
    camera = bpy.data.objects.new("bss-thumbnail-camera", data)
    scene.collection.objects.link(camera)
    camera.location = (7.0, -7.0, 5.0)
    direction = mathutils.Vector((0.0, 0.0, 0.0)) - camera.location
    camera.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    return camera
