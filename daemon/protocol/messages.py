"""msgspec Structs for every message of PROTOCOL.md §1 (addon link) and §2 (control).

Peers may add fields (the protocol grows additively), so unknown fields are ignored.
Opaque payloads stay `msgspec.Raw` until the code that understands them decodes them.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Raw, Struct

RequestId = int | str
EMPTY_OBJECT = Raw(b"{}")
NULL = Raw(b"null")

Vec3 = tuple[float, float, float]
RGBA = tuple[
    Annotated[float, Meta(ge=0, le=1)],
    Annotated[float, Meta(ge=0, le=1)],
    Annotated[float, Meta(ge=0, le=1)],
    Annotated[float, Meta(ge=0, le=1)],
]
ObjectName = Annotated[str, Meta(min_length=1, max_length=63)]
ObjectKind = Literal[
    "cube", "uv_sphere", "ico_sphere", "cylinder", "cone", "plane",
    "torus", "monkey", "empty", "camera", "light",
]  # fmt: skip
OBJECT_KINDS: tuple[str, ...] = ObjectKind.__args__  # type: ignore[attr-defined]


class Message(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base for wire messages: immutable, keyword-only, defaults left off the wire."""


# --- §1 addon link: envelopes --------------------------------------------------------


class LinkRequest(Message, frozen=True):
    type: str
    id: RequestId | None = None
    params: Raw = EMPTY_OBJECT


class LinkSuccess(Message, tag_field="status", tag="success", frozen=True):
    result: Raw
    id: RequestId | None = None


class LinkFailure(Message, tag_field="status", tag="error", frozen=True):
    code: str = "internal"
    message: str = ""
    id: RequestId | None = None


LinkResponse = LinkSuccess | LinkFailure


class LinkEvent(Message, frozen=True):
    event: str
    seq: int
    data: Raw = EMPTY_OBJECT


# --- §1 addon link: handshake and liveness -------------------------------------------


class HelloParams(Message, frozen=True):
    client: str
    protocol: int = 1


class HelloResult(Message, frozen=True):
    protocol: int
    addon_version: str
    blender_version: str
    file: str
    scene: str
    commands: list[str]
    session_id: str | None = None
    execute_code_enabled: bool = False


class MainThreadStatus(Message, frozen=True):
    busy: bool
    busy_for_ms: float
    queue_depth: int


class PongResult(Message, frozen=True):
    pong: bool
    main_thread: MainThreadStatus
    session_id: str | None = None


class AttachSessionParams(Message, frozen=True):
    session_id: str | None  # None: no session is attached any more
    name: str | None = None


class SubscribeParams(Message, frozen=True):
    events: list[str] = []


# --- §1 addon link: scene commands ---------------------------------------------------


class ObjectRecord(Message, frozen=True):
    name: str
    type: str
    location: Vec3
    rotation: Vec3
    scale: Vec3
    parent: str | None = None
    materials: list[str] = []
    visible: bool = True
    data_kind: str | None = None
    light_type: str | None = None  # additive: lets apply_state remake a light faithfully


MaterialColors = dict[str, RGBA]


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


class NoParams(Message, frozen=True):
    pass


class ObjectNameParams(Message, frozen=True):
    name: ObjectName


class CreateObjectParams(Message, frozen=True):
    kind: ObjectKind
    name: ObjectName | None = None
    location: Vec3 | None = None
    rotation: Vec3 | None = None
    scale: Vec3 | None = None


class TransformObjectParams(Message, frozen=True):
    name: ObjectName
    location: Vec3 | None = None
    rotation: Vec3 | None = None
    scale: Vec3 | None = None


class RenameObjectParams(Message, frozen=True):
    name: ObjectName
    new_name: ObjectName


class SelectObjectsParams(Message, frozen=True):
    names: list[ObjectName]
    active: ObjectName | None = None
    extend: bool = False


class SetMaterialParams(Message, frozen=True):
    object: ObjectName
    material: ObjectName
    color: RGBA | None = None


class ApplyStateParams(Message, frozen=True):
    scene: str = ""
    frame: int = 1
    file: str = ""
    objects: list[ObjectRecord] = []
    selection: list[str] = []
    active: str | None = None
    material_colors: MaterialColors = {}
    prune: bool = False


class SkippedObject(Message, frozen=True):
    name: str
    reason: str


class ApplyStateResult(Message, frozen=True):
    created: list[str]
    updated: list[str]
    removed: list[str]
    skipped: list[SkippedObject]


class PathParams(Message, frozen=True):
    path: Annotated[str, Meta(min_length=1, max_length=4096)]


class PathResult(Message, frozen=True):
    path: str
    bytes: int


class RenderThumbnailParams(Message, frozen=True):
    width: Annotated[int, Meta(ge=8, le=2048)] = 256
    height: Annotated[int, Meta(ge=8, le=2048)] = 256


class ExecuteCodeParams(Message, frozen=True):
    code: Annotated[str, Meta(max_length=1_000_000)]


# Each scene command's params Struct: the daemon validates at its edge with these
# before anything reaches Blender, so a bad request costs Blender nothing.
COMMAND_PARAMS: dict[str, type[Message]] = {
    "get_scene_info": NoParams,
    "get_object_info": ObjectNameParams,
    "get_state": NoParams,
    "create_object": CreateObjectParams,
    "delete_object": ObjectNameParams,
    "transform_object": TransformObjectParams,
    "rename_object": RenameObjectParams,
    "select_objects": SelectObjectsParams,
    "set_material": SetMaterialParams,
    "apply_state": ApplyStateParams,
    "save_blend": PathParams,
    "open_blend": PathParams,
    "render_thumbnail": RenderThumbnailParams,
    "execute_code": ExecuteCodeParams,
}
LINK_ONLY_TYPES = frozenset({"hello", "ping", "attach_session", "subscribe"})


# --- §2 control protocol -------------------------------------------------------------


class ControlRequest(Message, frozen=True):
    op: str
    id: RequestId | None = None
    params: Raw = EMPTY_OBJECT
    token: str | None = None
    client_id: str | None = None


class ErrorBody(Message, frozen=True):
    code: str
    message: str


class Reply(Struct, frozen=True, kw_only=True):
    """Base for control replies: every field is always on the wire (`ok` included)."""


class ControlOk(Reply, kw_only=True, frozen=True):
    id: RequestId | None
    ok: Literal[True] = True
    result: Raw


class ControlFailure(Reply, kw_only=True, frozen=True):
    id: RequestId | None
    ok: Literal[False] = False
    error: ErrorBody


class ControlResponse(Message, frozen=True):
    """What a client decodes: either shape of the server's reply, or a watch event
    (then `event` is set and `ok` is None)."""

    ok: bool | None = None
    id: RequestId | None = None
    result: Raw = NULL
    error: ErrorBody | None = None
    event: str | None = None
    data: Raw = NULL


class ControlEvent(Message, frozen=True):
    """A `watch` stream item: `{"id": <the watch request's id>, "event": ..., "data": ...}`."""

    event: str
    id: RequestId | None = None
    data: Raw = EMPTY_OBJECT


def encode_json(value: object) -> bytes:
    return _encoder.encode(value)


_encoder = msgspec.json.Encoder()
