"""Snapshots of a session's scene: a .blend and a thumbnail, taken when it closes, and
the thumbnail op."""

from __future__ import annotations

import base64

import msgspec
import structlog

from ..config import LOOPBACK_HOSTS
from ..protocol import DECODE_ERRORS, RemoteProtocolError
from ..protocol.scene import PathResult, ThumbnailResult
from ..store import SessionStore, SnapshotInfo
from .blender import BlenderLink

log = structlog.get_logger("snapshots")
THUMBNAIL_SIZE_PX = 256
_thumbnail_decoder = msgspec.json.Decoder(ThumbnailResult)
_path_decoder = msgspec.json.Decoder(PathResult)


THUMBNAIL_PARAMS = b'{"width": %d, "height": %d}' % (THUMBNAIL_SIZE_PX, THUMBNAIL_SIZE_PX)


def thumbnail_png(result: bytes) -> bytes:
    """The PNG in render_thumbnail's result. Raises a decode error (or ValueError)
    for a result that is not a thumbnail."""
    return base64.b64decode(_thumbnail_decoder.decode(result).png_base64, validate=True)


async def render_thumbnail(link: BlenderLink) -> bytes:
    """A PNG of the scene. Raises RemoteProtocolError, or a decode error for a result
    that is not a thumbnail."""
    return thumbnail_png(await link.request("render_thumbnail", THUMBNAIL_PARAMS))


async def take_snapshots(
    link: BlenderLink, store: SessionStore, session_id: str, *, blend: bool, thumbnail: bool
) -> SnapshotInfo | None:
    """Save what Blender can give of the scene beside the record. Nothing here stops a
    close: a snapshot that fails is logged and left out."""
    if not link.connected:
        return None
    blend_name = thumbnail_name = None
    if blend and link.host in LOOPBACK_HOSTS:  # Blender must see our data dir
        path = store.path_for(session_id, ".blend")
        try:
            raw = await link.request(
                "save_blend", msgspec.json.encode({"path": str(path), "copy": True})
            )
            _path_decoder.decode(raw)
            await store.sync_written(path)
            blend_name = path.name
        except (RemoteProtocolError, *DECODE_ERRORS, OSError) as error:
            log.warning("blend_snapshot_failed", session_id=session_id, reason=str(error))
    if thumbnail:
        try:
            thumbnail_name = await store.write_thumbnail(session_id, await render_thumbnail(link))
        except (RemoteProtocolError, *DECODE_ERRORS, OSError, ValueError) as error:
            log.warning("thumbnail_failed", session_id=session_id, reason=str(error))
    return SnapshotInfo(
        blend=blend_name,
        blender_version=link.info().blender_version if blend_name else None,
        thumbnail=thumbnail_name,
    )
