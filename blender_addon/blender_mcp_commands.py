"""blender-mcp's own scene commands, in its shapes: `get_viewport_screenshot` (its
`look` tool's image) and `list_scene_items` (name search over objects, materials and
collections). blender_mcp.py says what we claim to that client.

The screenshot is the 3D viewport drawn off-screen when Blender has a window with one,
and otherwise (headless Blender, or no 3D viewport open) a Workbench render of the
scene, the thumbnail's machinery. It is written to the client's `filepath` through a
new private file in the same directory renamed over it: a symlink at that path is
replaced, never written through.

Every function here runs on: main thread.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zlib

import bpy

from . import render, snapshot
from .server import CommandError
from .vocabulary import JSONObject


def get_viewport_screenshot(params: JSONObject) -> JSONObject:
    path, max_size = params["filepath"], params["max_size"]
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise CommandError("not_found", f"directory {directory!r} does not exist")
    scene = snapshot.active_scene()
    png, width, height, method = None, 0, 0, "render"
    viewport = _viewport()
    if viewport is not None:
        try:
            png, width, height = _draw_viewport(scene, *viewport, max_size)
            method = "offscreen"
        except Exception as error:  # no GPU context here: a render still shows the scene
            print(f"blender-scene-sessions: off-screen viewport failed ({error!r}); rendering")
    if png is None:
        width, height = _render_size(scene, max_size)
        png = render.render_png(width, height)
    _write_replacing(path, png)
    return {
        "success": True,
        "width": width,
        "height": height,
        "filepath": path,
        "method": method,
        "file": bpy.data.filepath,
        "scene": scene.name,
        "scene_count": len(bpy.data.scenes),
    }


def list_scene_items(params: JSONObject) -> JSONObject:
    needle, limit = params["query"].strip().lower(), params["limit"]
    scene = snapshot.active_scene()
    users: dict[str, list[str]] = {}
    for obj in scene.objects:
        for slot in obj.material_slots:
            if slot.material is not None:
                users.setdefault(slot.material.name, []).append(obj.name)
    candidates = [("object", obj.name, f"{obj.type.title()} object") for obj in scene.objects]
    for material in bpy.data.materials:
        on = users.get(material.name, [])
        shown = ", ".join(on[:3]) + (f" and {len(on) - 3} more" if len(on) > 3 else "")
        detail = f"Material on {shown}" if on else "Material not used by any object in this scene"
        candidates.append(("material", material.name, detail))
    for collection in bpy.data.collections:
        count = len(collection.all_objects)
        candidates.append(("collection", collection.name, f"Collection with {count} objects"))
    matches = [
        (0 if not needle or name.lower().startswith(needle) else 1, order, kind, name, detail)
        for order, (kind, name, detail) in enumerate(candidates)
        if not needle or needle in name.lower()
    ]
    matches.sort()
    items = [{"kind": kind, "name": name, "detail": detail} for _, _, kind, name, detail in matches]
    return {"items": items[:limit], "total": len(items)}


# --- the picture ------------------------------------------------------------------------


def _viewport() -> tuple[bpy.types.SpaceView3D, bpy.types.Region] | None:
    """The first 3D viewport of an open window, if Blender has one."""
    manager = bpy.context.window_manager
    for window in manager.windows if manager is not None else ():
        for area in window.screen.areas:
            if area.type != "VIEW_3D":
                continue
            region = next((r for r in area.regions if r.type == "WINDOW"), None)
            space = area.spaces.active
            if region is not None and isinstance(space, bpy.types.SpaceView3D):
                return space, region
    return None


def _draw_viewport(
    scene: bpy.types.Scene, space: bpy.types.SpaceView3D, region: bpy.types.Region, max_size: int
) -> tuple[bytes, int, int]:
    import gpu  # Blender's own module: only in a Blender that can draw

    scale = min(1.0, max_size / max(region.width, region.height, 1))
    width, height = max(1, int(region.width * scale)), max(1, int(region.height * scale))
    view, view_layer = space.region_3d, bpy.context.view_layer
    if view is None or view_layer is None:
        raise RuntimeError("the 3D viewport has no view to draw")
    offscreen = gpu.types.GPUOffScreen(width, height)
    try:
        offscreen.draw_view3d(
            scene,
            view_layer,
            space,
            region,
            view.view_matrix,
            view.window_matrix,
            do_color_management=True,
        )
        buffer = offscreen.texture_color.read()
    finally:
        offscreen.free()
    buffer.dimensions = width * height * 4  # type: ignore[assignment]  # flat
    values = buffer.to_list()
    factor = 255.0 if values and max(values) <= 1.0 else 1.0  # a float texture: 0..1
    pixels = bytes(min(255, max(0, int(v * factor))) for v in values)
    stride = width * 4
    rows = b"".join(pixels[row * stride : (row + 1) * stride] for row in reversed(range(height)))
    return png_bytes(width, height, rows), width, height


def _render_size(scene: bpy.types.Scene, max_size: int) -> tuple[int, int]:
    """The scene's render aspect, its longest side max_size (8..2048, the render's)."""
    render = scene.render
    wide, tall = max(render.resolution_x, 1), max(render.resolution_y, 1)
    longest = max(8, min(max_size, 2048))
    scale = longest / max(wide, tall)
    return max(8, round(wide * scale)), max(8, round(tall * scale))


def png_bytes(width: int, height: int, rgba: bytes) -> bytes:
    """An 8-bit RGBA PNG of `rgba` (rows top to bottom)."""
    stride = width * 4
    raw = b"".join(b"\x00" + rgba[row * stride : (row + 1) * stride] for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _write_replacing(path: str, data: bytes) -> None:
    """Write `data` as `path`: a new private file, renamed over whatever is there."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".bss-screenshot-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise CommandError("invalid_params", f"cannot write {path!r}: {error.strerror}") from None
