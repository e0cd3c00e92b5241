"""Snapshots taken when a session closes: a .blend of the scene and a thumbnail."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import msgspec
import structlog

from .link import AddonLink
from .protocol import ErrorCode, RemoteProtocolError
from .protocol.messages import PathResult
from .protocol.ops import ThumbnailResult
from .store import SessionStore, SnapshotInfo, storage_error

if TYPE_CHECKING:
    from .sessions import SessionManager

log = structlog.get_logger("snapshots")
THUMBNAIL_SIZE_PX = 256
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class _Thumbnail(msgspec.Struct):
    png_base64: str


async def render_thumbnail(link: AddonLink) -> bytes:
    raw = await link.request(
        "render_thumbnail", b'{"width": %d, "height": %d}' % (THUMBNAIL_SIZE_PX, THUMBNAIL_SIZE_PX)
    )
    return base64.b64decode(msgspec.json.decode(raw, type=_Thumbnail).png_base64)


async def take_snapshots(
    link: AddonLink, store: SessionStore, session_id: str, *, blend: bool, thumbnail: bool
) -> SnapshotInfo | None:
    """Save what Blender can give of the scene beside the record. Nothing here stops a
    close: a snapshot that fails is logged and left out."""
    if not link.connected:
        return None
    blend_name = thumbnail_name = None
    if blend and link.config.host in LOOPBACK_HOSTS:  # Blender must see our data dir
        path = store.path_for(session_id, ".blend")
        try:
            raw = await link.request(
                "save_blend", msgspec.json.encode({"path": str(path), "copy": True})
            )
            msgspec.json.decode(raw, type=PathResult)
            await store.sync_written(path)
            blend_name = path.name
        except (RemoteProtocolError, msgspec.DecodeError, OSError) as error:
            log.warning("blend_snapshot_failed", session_id=session_id, reason=str(error))
    if thumbnail:
        try:
            thumbnail_name = await store.write_thumbnail(session_id, await render_thumbnail(link))
        except (RemoteProtocolError, msgspec.DecodeError, OSError, ValueError) as error:
            log.warning("thumbnail_failed", session_id=session_id, reason=str(error))
    return SnapshotInfo(
        blend=blend_name,
        blender_version=link.snapshot.blender_version if blend_name else None,
        thumbnail=thumbnail_name,
    )


async def session_thumbnail(manager: SessionManager, ref: str) -> ThumbnailResult:
    """A PNG of the scene: rendered now (and stored) for an open session, the stored
    one for a closed session."""
    session_id = await manager.resolve(ref)
    session = manager.open_session_or_none(session_id)
    if session is not None:
        if not session.link.connected:
            raise session.link.unavailable_error()
        png = await render_thumbnail(session.link)
        try:
            await manager.store.write_thumbnail(session_id, png)
        except OSError as error:
            raise storage_error(error) from None
    else:
        if not manager.store.exists(session_id):
            raise RemoteProtocolError(ErrorCode.NOT_FOUND, f"no session {session_id!r}")
        png = await manager.store.read_thumbnail(session_id)
    return ThumbnailResult(
        session_id=session_id, png_base64=base64.b64encode(png).decode(), bytes=len(png)
    )
