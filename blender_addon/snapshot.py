"""Scene <-> JSON: object records, `get_state` snapshots, and `apply_state`.

Objects are built through the data API (bpy.data, bmesh), never operators: 1,000
cubes took 27-30 s through bpy.ops here and about 0.2 s this way. Nothing here keeps
a bpy reference after it returns (they go stale when a file is loaded).

Every function here runs on: main thread.

Long (450 lines) because it is the one place scene data becomes JSON and back: records,
the mesh builders of each kind and apply_state's applier use each other throughout.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol, cast

import bmesh
import bpy

from .server import CommandError
from .vocabulary import LIGHT_TYPES, MESH_KINDS, OBJECT_KINDS, JSONObject

# Custom property that remembers which primitive the addon made an object (and its
# data) from; on a material, that the addon made it. Removing an object removes the
# data and materials the addon made for it once nothing else uses them, and never
# anything the addon did not make.
KIND_PROPERTY = "bss_kind"
MADE_PROPERTY = "bss_made"
# Errors bpy raises for one object that cannot take a change; apply_state reports the
# object as skipped and goes on.
OBJECT_ERRORS = (RuntimeError, ReferenceError, TypeError, ValueError, AttributeError)


class _Floats(Protocol):
    """A mathutils Vector or Euler: sliceable floats."""

    def __getitem__(self, key: slice, /) -> Sequence[float]: ...


def _vec(values: _Floats) -> list[float]:
    return [float(v) for v in values[:]]


# The boundary with bpy's float-array properties (colours, socket values): bpy reads
# and takes any sequence of floats, the stubs type them as bpy_prop_array without item
# access. These two helpers are the only places that cross it.


def floats_of(array: object) -> list[float]:
    return [float(v) for v in cast(Iterable[float], array)]


def set_floats(owner: object, attribute: str, values: Sequence[float]) -> None:
    setattr(owner, attribute, list(values))


def active_scene() -> bpy.types.Scene:
    """The active scene. Runs on: main thread (the stubs allow None: while add-ons load)."""
    scene = bpy.context.scene
    if scene is None:
        raise CommandError("internal", "Blender has no active scene")
    return scene


def active_view_layer() -> bpy.types.ViewLayer:
    """The active view layer. Runs on: main thread."""
    view_layer = bpy.context.view_layer
    if view_layer is None:
        raise CommandError("internal", "Blender has no active view layer")
    return view_layer


def data_kind(obj: bpy.types.Object) -> str | None:
    """The primitive `obj` was made from, where that can be known. Runs on: main thread."""
    kind = obj.get(KIND_PROPERTY)
    if isinstance(kind, str) and kind in OBJECT_KINDS:
        return kind
    if obj.type in ("CAMERA", "LIGHT"):
        return obj.type.lower()
    if obj.type == "EMPTY":
        return "empty"
    if isinstance(obj.data, bpy.types.Mesh):
        mesh = obj.data
        counts = (len(mesh.vertices), len(mesh.polygons))
        if counts == (8, 6):
            return "cube"  # e.g. the startup file's cube, which the addon did not make
        if counts == (4, 1):
            return "plane"
    return None


def object_record(obj: bpy.types.Object, *, just_linked: bool = False) -> JSONObject:
    """The object record of PROTOCOL.md §1. Runs on: main thread.

    `just_linked`: the object was just linked into the scene's own collection. Its view
    layer is then out of date, and `visible_get()` would resync it, which costs time in
    proportion to the scene (0.28 ms per call at 6,000 objects: creating 10,000 objects
    was quadratic). A new object's base is not hidden, so it is visible unless the
    object itself is disabled in viewports.
    """
    visible = not obj.hide_viewport if just_linked else obj.visible_get()
    record: JSONObject = {
        "name": obj.name,
        "type": obj.type,
        "location": _vec(obj.location),
        "rotation": _vec(obj.rotation_euler),
        "scale": _vec(obj.scale),
        "parent": obj.parent.name if obj.parent else None,
        "materials": [slot.material.name for slot in obj.material_slots if slot.material],
        "visible": bool(visible),
        "data_kind": data_kind(obj),
    }
    if isinstance(obj.data, bpy.types.Light):
        record["light_type"] = obj.data.type
    return record


def material_colors(objects: Iterable[bpy.types.Object]) -> JSONObject:
    colors: JSONObject = {}
    for obj in objects:
        for slot in obj.material_slots:
            if slot.material is not None and slot.material.name not in colors:
                colors[slot.material.name] = floats_of(slot.material.diffuse_color)
    return colors


def get_state() -> JSONObject:
    """A full snapshot of the active scene. Runs on: main thread."""
    scene = active_scene()
    objects = list(scene.objects)
    active = active_view_layer().objects.active
    return {
        "scene": scene.name,
        "frame": scene.frame_current,
        "file": bpy.data.filepath,
        "objects": [object_record(obj) for obj in objects],
        "selection": [obj.name for obj in objects if obj.select_get()],
        "active": active.name if active is not None else None,
        "material_colors": material_colors(objects),
    }


# --- building objects ------------------------------------------------------------------


def _torus(
    bm: bmesh.types.BMesh,
    major_segments: int = 48,
    minor_segments: int = 12,
    major_radius: float = 1.0,
    minor_radius: float = 0.25,
) -> None:
    rings = []
    for i in range(major_segments):
        theta = 2 * math.pi * i / major_segments
        ring = []
        for j in range(minor_segments):
            phi = 2 * math.pi * j / minor_segments
            radius = major_radius + minor_radius * math.cos(phi)
            ring.append(
                bm.verts.new(
                    (
                        radius * math.cos(theta),
                        radius * math.sin(theta),
                        minor_radius * math.sin(phi),
                    )
                )
            )
        rings.append(ring)
    for i in range(major_segments):
        ring, next_ring = rings[i], rings[(i + 1) % major_segments]
        for j in range(minor_segments):
            k = (j + 1) % minor_segments
            bm.faces.new((ring[j], next_ring[j], next_ring[k], ring[k]))


def _build_mesh(kind: str, name: str) -> bpy.types.Mesh:
    bm = bmesh.new()
    try:
        if kind == "cube":
            bmesh.ops.create_cube(bm, size=2.0)
        elif kind == "uv_sphere":
            bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=1.0)
        elif kind == "ico_sphere":
            bmesh.ops.create_icosphere(bm, subdivisions=2, radius=1.0)
        elif kind == "cylinder":
            bmesh.ops.create_cone(
                bm, cap_ends=True, segments=32, radius1=1.0, radius2=1.0, depth=2.0
            )
        elif kind == "cone":
            bmesh.ops.create_cone(
                bm, cap_ends=True, segments=32, radius1=1.0, radius2=0.0, depth=2.0
            )
        elif kind == "plane":
            bmesh.ops.create_grid(bm, x_segments=1, y_segments=1, size=1.0)
        elif kind == "torus":
            _torus(bm)
        elif kind == "monkey":
            bmesh.ops.create_monkey(bm)
        mesh = bpy.data.meshes.new(name)
        bm.to_mesh(mesh)
    finally:
        bm.free()
    return mesh


def new_object(kind: str, name: str, light_type: str = "POINT") -> bpy.types.Object:
    """Make an object of `kind`, link it to the active scene, return it.
    Runs on: main thread. The caller must not keep the returned reference."""
    data: bpy.types.ID | None
    if kind in MESH_KINDS:
        data = _build_mesh(kind, name)
    elif kind == "camera":
        data = bpy.data.cameras.new(name)
    elif kind == "light":
        data = bpy.data.lights.new(name, type=_light_type(light_type))
    elif kind == "empty":
        data = None
    else:
        raise CommandError(
            "invalid_params", f"unknown kind {kind!r}; known: {', '.join(OBJECT_KINDS)}"
        )
    if data is not None:
        data[KIND_PROPERTY] = kind
    obj = bpy.data.objects.new(name, data)
    obj[KIND_PROPERTY] = kind
    active_scene().collection.objects.link(obj)
    return obj


def _light_type(name: str) -> Literal["POINT", "SUN", "SPOT", "AREA"]:
    for light_type in LIGHT_TYPES:
        if name == light_type:
            return light_type
    return "POINT"


def remove_objects(objects: Sequence[bpy.types.Object]) -> None:
    """Remove objects, then the data and materials the addon made for them that
    nothing else uses any more (they would stay behind as orphans, 9-32 KiB each).
    Runs on: main thread."""
    datas = {obj.data for obj in objects if obj.data is not None and obj.data.get(KIND_PROPERTY)}
    materials = {
        slot.material
        for obj in objects
        for slot in obj.material_slots
        if slot.material is not None and slot.material.get(MADE_PROPERTY)
    }
    bpy.data.batch_remove(list(objects))  # one batch: one by one, 10,000 took minutes
    orphans = [data for data in datas if data.users == 0]
    if orphans:
        bpy.data.batch_remove(orphans)
    unused = [material for material in materials if material.users == 0]
    if unused:
        bpy.data.batch_remove(unused)


def set_transform(
    obj: bpy.types.Object,
    location: list[float] | None = None,
    rotation: list[float] | None = None,
    scale: list[float] | None = None,
) -> bool:
    """Set what is given; return whether anything changed. Runs on: main thread."""
    changed = False
    for attribute, value in (
        ("location", location),
        ("rotation_euler", rotation),
        ("scale", scale),
    ):
        if value is not None and _vec(getattr(obj, attribute)) != _vec(value):
            setattr(obj, attribute, value)
            changed = True
    return changed


def assign_material(
    obj: bpy.types.Object, material_name: str, color: list[float] | None = None
) -> None:
    """Put a material (made if missing) in the object's first slot. Runs on: main thread."""
    data = obj.data
    if not isinstance(data, bpy.types.Mesh | bpy.types.Curve | bpy.types.MetaBall):
        raise CommandError(
            "invalid_params", f"object {obj.name!r} of type {obj.type} cannot have materials"
        )
    material = bpy.data.materials.get(material_name)
    if material is None:
        material = bpy.data.materials.new(material_name)
        material[MADE_PROPERTY] = True
    if color is not None:
        set_floats(material, "diffuse_color", color)
        if material.use_nodes and material.node_tree is not None:
            for node in material.node_tree.nodes:
                if node.type == "BSDF_PRINCIPLED":
                    set_floats(node.inputs["Base Color"], "default_value", color)
    slots = data.materials
    if len(slots) == 0:
        slots.append(material)
    elif slots[0] != material:
        slots[0] = material


# --- apply_state -----------------------------------------------------------------------


def apply_state(snapshot: JSONObject, prune: bool) -> JSONObject:
    """Make the scene match a get_state snapshot (checked by params.py: unique names, no
    parent loops). Idempotent: applying the same snapshot twice reports nothing created,
    updated or removed the second time. An object that cannot be made or changed is
    listed in `skipped` with the reason, and the rest is applied: the result reports
    exactly what was done. Runs on: main thread."""
    return _StateApplier(snapshot["material_colors"]).apply(snapshot, prune)


class _StateApplier:
    """One apply_state call's working state. Runs on: main thread."""

    def __init__(self, colors: JSONObject) -> None:
        self.scene = active_scene()
        self.colors = colors
        self.created: list[str] = []
        self.updated: list[str] = []
        self.removed: list[str] = []
        self.skipped: list[JSONObject] = []
        self.touched: set[str] = set()  # names created or updated: O(1) membership at 10,000
        self.in_scene = {obj.name for obj in self.scene.objects}
        # Looked up once: bpy.data.objects.get() searches the whole list (0.29 ms per
        # call at 10,000 objects). The references live only for this call on the main
        # thread, where nothing can free the objects behind our back.
        self.by_name = {obj.name: obj for obj in bpy.data.objects}
        # (object, wanted visibility) for a second pass
        self.hidden_to_check: list[tuple[bpy.types.Object, bool]] = []

    def apply(self, snapshot: JSONObject, prune: bool) -> JSONObject:
        records = snapshot["objects"]
        if prune:
            wanted = {record["name"] for record in records}
            doomed = [obj for obj in self.scene.objects if obj.name not in wanted]
            self.removed.extend(obj.name for obj in doomed)
            for obj in doomed:
                self.by_name.pop(obj.name, None)
            remove_objects(doomed)
        for record in records:
            try:
                self._apply_record(record)
            except OBJECT_ERRORS as error:  # this object only: report it, apply the rest
                self.by_name.pop(record["name"], None)
                self._skip(record["name"], f"could not apply: {error}")
        # After every object is linked: the first visible_get() syncs the view layer once,
        # instead of once per object created before it.
        for obj, visible in self.hidden_to_check:
            if bool(obj.visible_get()) != visible:
                obj.hide_set(not visible)
                self._mark_updated(obj.name)
        self._apply_parents(records)
        _apply_selection(snapshot["selection"], self.by_name.get(snapshot["active"] or ""))
        if self.scene.frame_current != snapshot["frame"]:
            self.scene.frame_set(snapshot["frame"])
        return {
            "created": self.created,
            "updated": self.updated,
            "removed": self.removed,
            "skipped": self.skipped,
        }

    def _skip(self, name: str, reason: str) -> None:
        self.skipped.append({"name": name, "reason": reason})

    def _mark_updated(self, name: str) -> None:
        if name not in self.touched:
            self.updated.append(name)
            self.touched.add(name)

    def _apply_record(self, record: JSONObject) -> None:
        name = record["name"]
        obj = self.by_name.get(name)
        if obj is not None and obj.type != record["type"]:
            del self.by_name[name]
            remove_objects([obj])
            obj = None
            self.removed.append(name)
        changed = False
        if obj is None:
            kind = record["data_kind"]
            if kind not in OBJECT_KINDS:
                self._skip(
                    name,
                    f"{record['type'].lower()} object with geometry the addon did not make; "
                    "only a .blend snapshot can bring it back",
                )
                return
            obj = new_object(kind, name, record["light_type"] or "POINT")
            if obj.name != name:
                self._skip(name, f"the name is taken by other data; made as {obj.name!r}")
            self.by_name[obj.name] = obj
            self.created.append(obj.name)
            self.touched.add(obj.name)
        elif obj.name not in self.in_scene:
            self.scene.collection.objects.link(obj)
            changed = True
        changed |= set_transform(obj, record["location"], record["rotation"], record["scale"])
        for material_name in record["materials"][:1]:
            current = obj.material_slots[0].material if obj.material_slots else None
            color = self.colors.get(material_name)
            if obj.type == "MESH" and (
                current is None
                or current.name != material_name
                or (color is not None and floats_of(current.diffuse_color) != color)
            ):
                assign_material(obj, material_name, color)
                changed = True
        self.hidden_to_check.append((obj, record["visible"]))
        if changed:
            self._mark_updated(obj.name)

    def _apply_parents(self, records: list[JSONObject]) -> None:
        for record in records:
            obj = self.by_name.get(record["name"])
            if obj is None:
                continue
            parent = self.by_name.get(record["parent"]) if record["parent"] else None
            if obj.parent == parent:
                continue
            try:
                obj.parent = parent
            except OBJECT_ERRORS as error:  # a loop through objects outside the snapshot
                self._skip(obj.name, f"parent not set: {error}")
                continue
            if obj.parent != parent:
                self._skip(obj.name, f"Blender refused {record['parent']!r} as its parent")
                continue
            # Keep the recorded local transform: the record holds local values.
            obj.location, obj.rotation_euler, obj.scale = (
                record["location"],
                record["rotation"],
                record["scale"],
            )
            self._mark_updated(obj.name)


def _apply_selection(selection: list[str], active: bpy.types.Object | None) -> None:
    view_layer = active_view_layer()
    chosen = set(selection)
    # scene.objects, not view_layer.objects: the view layer lags behind removals.
    scene = active_scene()
    for obj in scene.objects:
        want = obj.name in chosen
        if obj.select_get() != want:
            obj.select_set(want)
    if view_layer.objects.active != active and (active is None or active.name in scene.objects):
        view_layer.objects.active = active
