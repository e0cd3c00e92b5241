"""The scene commands' params and results (PROTOCOL.md §1), as msgspec Structs.

Params refuse unknown keys (`cmd transform_object name=Leg1 locaton=[5,5,5]` must not
answer success and do nothing); results and object records accept additive fields,
since the addon may grow them.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from msgspec import UNSET, Meta, Raw, UnsetType

from .limits import MAX_COORDINATE, MAX_FRAME, MAX_OBJECT_NAME_CHARS, MIN_FRAME
from .messages import Message, Params

ObjectKind = Literal[
    "cube", "uv_sphere", "ico_sphere", "cylinder", "cone", "plane",
    "torus", "monkey", "empty", "camera", "light",
]  # fmt: skip
OBJECT_KINDS: tuple[str, ...] = get_args(ObjectKind)

Coordinate = Annotated[float, Meta(ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Vec3 = tuple[Coordinate, Coordinate, Coordinate]
Channel = Annotated[float, Meta(ge=0, le=1)]
RGBA = tuple[Channel, Channel, Channel, Channel]
ObjectName = Annotated[str, Meta(min_length=1, max_length=MAX_OBJECT_NAME_CHARS)]
Frame = Annotated[int, Meta(ge=MIN_FRAME, le=MAX_FRAME)]
MaterialColors = dict[ObjectName, RGBA]


# --- records (results, and the objects inside apply_state) ---------------------------


class ObjectRecord(Message, frozen=True):
    name: ObjectName
    type: Annotated[str, Meta(max_length=32)]
    location: Vec3
    rotation: Vec3
    scale: Vec3
    parent: ObjectName | None = None
    materials: list[ObjectName] = []
    visible: bool = True
    data_kind: Annotated[str, Meta(max_length=32)] | None = None
    light_type: Annotated[str, Meta(max_length=16)] | None = None  # additive


class SceneState(Message, frozen=True):
    """The result of `get_state`, and the params of `apply_state` (plus `prune`)."""

    scene: str
    frame: int
    file: str
    objects: list[ObjectRecord]
    selection: list[str] = []
    active: str | None = None
    material_colors: MaterialColors = {}  # additive: material name -> RGBA


class SceneObjectSummary(Message, frozen=True):
    name: str
    type: str
    location: Vec3


class SceneInfo(Message, frozen=True):
    """blender-mcp's get_scene_info shape, plus `frame`, `selection`, `active`."""

    name: str
    object_count: int
    objects: list[SceneObjectSummary]
    materials_count: int
    frame: int = 1
    selection: list[str] = []
    active: str | None = None


class DeletedResult(Message, frozen=True):
    deleted: str


class SelectionResult(Message, frozen=True):
    selection: list[str] = []
    active: str | None = None


class SkippedObject(Message, frozen=True):
    name: str
    reason: str


class ApplyStateResult(Message, frozen=True):
    created: list[str]
    updated: list[str]
    removed: list[str]
    skipped: list[SkippedObject]


class PathResult(Message, frozen=True):
    path: str
    bytes: int


class ThumbnailResult(Message, frozen=True):
    png_base64: str
    width: int = 0
    height: int = 0


# --- params ---------------------------------------------------------------------------


class ObjectNameParams(Params, frozen=True):
    name: ObjectName


class CreateObjectParams(Params, frozen=True):
    kind: ObjectKind
    name: ObjectName | None = None
    location: Vec3 | None = None
    rotation: Vec3 | None = None
    scale: Vec3 | None = None
    parent: ObjectName | None = None
    # With a parent: stay where it is in the world (the default), its own location,
    # rotation and scale becoming relative to the parent; false: keep those values.
    keep_transform: bool = True


class TransformObjectParams(Params, frozen=True):
    """`parent`: a name, or null to clear it; absent: left as it is. The transform is
    applied first, then the parent (see CreateObjectParams.keep_transform)."""

    name: ObjectName
    location: Vec3 | None = None
    rotation: Vec3 | None = None
    scale: Vec3 | None = None
    parent: ObjectName | UnsetType | None = UNSET
    keep_transform: bool = True


class RenameObjectParams(Params, frozen=True):
    name: ObjectName
    new_name: ObjectName


class SelectObjectsParams(Params, frozen=True):
    names: list[ObjectName]
    active: ObjectName | None = None
    extend: bool = False


class SetMaterialParams(Params, frozen=True):
    object: ObjectName
    material: ObjectName
    color: RGBA | None = None


class ApplyStateParams(Params, frozen=True):
    scene: str = ""
    frame: Frame = 1
    file: str = ""
    objects: list[ObjectRecord] = []
    selection: list[ObjectName] = []
    active: ObjectName | None = None
    material_colors: MaterialColors = {}
    prune: bool = False


FilePath = Annotated[str, Meta(min_length=1, max_length=4096)]
BlendPath = FilePath


class OpenBlendParams(Params, frozen=True):
    path: BlendPath


class SaveBlendParams(Params, frozen=True):
    path: BlendPath
    copy: bool = False  # save a copy: the open file keeps its own path
    compress: bool = False  # Blender's own compression (smaller, a little slower)


Size = Annotated[int, Meta(ge=8, le=2048)]


class RenderThumbnailParams(Params, frozen=True):
    width: Size = 256
    height: Size = 256


class ExecuteCodeParams(Params, frozen=True):
    code: Annotated[str, Meta(max_length=1_000_000)]


class ViewportScreenshotParams(Params, frozen=True):
    """blender-mcp's: the image is written to `filepath` (absolute) on Blender's side."""

    filepath: FilePath
    max_size: Annotated[int, Meta(ge=16, le=4096)] = 800
    format: Literal["png"] = "png"


class ListSceneItemsParams(Params, frozen=True):
    """blender-mcp's: objects, materials and collections whose names hold `query`."""

    query: Annotated[str, Meta(max_length=63)] = ""
    limit: Annotated[int, Meta(ge=1, le=100)] = 30


class SceneEdited(Message, frozen=True):
    """The `scene_edited` event's data: a change made beside the daemon (another
    client's command, a person in the GUI): the records of the objects added or
    changed (ObjectRecord's shape, kept as sent) and the names of those removed."""

    source: Literal["gui", "client"]
    objects: list[Raw] = []
    removed: list[ObjectName] = []
