"""Moving closed sessions in and out of the data dir as one archive (store/archive.py
does the file work; this checks the request against the daemon's sessions)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import trio

from .protocol import ErrorCode, RemoteProtocolError
from .protocol.ops import ExportResult, ImportedSession, ImportResult
from .store import storage_error
from .store.archive import export_sessions, import_sessions

if TYPE_CHECKING:
    from .sessions import SessionManager

log = structlog.get_logger("transfer")


async def export(
    manager: SessionManager, refs: list[str], everything: bool, path: str
) -> ExportResult:
    """Write closed sessions (their records, .blend snapshots, thumbnails) to one archive."""
    if everything:
        listed, _ = await manager.store.list()
        ids = [item.summary.session_id for item in listed]
    elif refs:
        ids = [await manager.resolve(ref) for ref in refs]
    else:
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS, "name the sessions to export, or set all"
        )
    for session_id in ids:
        if manager.is_open(session_id):
            raise RemoteProtocolError(
                ErrorCode.CONFLICT, f"session {session_id} is open; close it before exporting"
            )
        if not manager.store.exists(session_id):
            raise RemoteProtocolError(ErrorCode.NOT_FOUND, f"no saved session {session_id}")
    try:
        size = await trio.to_thread.run_sync(export_sessions, manager.store, ids, Path(path))
    except OSError as error:
        raise storage_error(error) from None
    log.info("sessions_exported", path=path, sessions=ids)
    return ExportResult(path=path, session_ids=ids, bytes=size)


async def import_archive(manager: SessionManager, path: str, overwrite: bool) -> ImportResult:
    report = await trio.to_thread.run_sync(
        lambda: import_sessions(manager.store, Path(path), overwrite=overwrite)
    )
    log.info("sessions_imported", path=path, imported=report.imported)
    return ImportResult(
        imported=[
            ImportedSession(from_id=item["from"], to_id=item["to"]) for item in report.imported
        ],
        overwritten=report.overwritten,
    )
