"""Moving closed sessions in and out of the data dir as one archive (store/archive.py
does the file work; this checks the request against the daemon's sessions)."""

from __future__ import annotations

from pathlib import Path

import structlog
import trio

from ..protocol import ErrorCode, RemoteProtocolError
from ..protocol.ops import ExportResult, ImportedSession, ImportResult
from ..store import SessionStore
from ..store.archive import ImportLimits, export_sessions, import_sessions
from .catalog import Catalog

log = structlog.get_logger("transfer")


async def export(
    store: SessionStore, catalog: Catalog, refs: list[str], everything: bool, path: str
) -> ExportResult:
    """Write closed sessions (their records, .blend snapshots, thumbnails) to one archive."""
    if everything:
        ids = [row.session_id for row in await store.page(1 << 62, None, None)]
    elif refs:
        ids = [await catalog.resolve(ref) for ref in refs]
    else:
        raise RemoteProtocolError(
            ErrorCode.INVALID_PARAMS, "name the sessions to export, or set all"
        )
    for session_id in ids:
        if session_id in catalog.registry:
            raise RemoteProtocolError(
                ErrorCode.CONFLICT, f"session {session_id} is open; close it before exporting"
            )
        if not store.exists(session_id):
            raise RemoteProtocolError(ErrorCode.NOT_FOUND, f"no saved session {session_id}")
    try:
        size = await trio.to_thread.run_sync(export_sessions, store.path_for, ids, Path(path))
    except OSError as error:
        raise RemoteProtocolError(
            ErrorCode.STORAGE,
            f"cannot write the archive {path}: {error.strerror or error}; nothing was exported",
        ) from None
    log.info("sessions_exported", path=path, sessions=ids)
    return ExportResult(path=path, session_ids=ids, bytes=size)


async def import_archive(
    store: SessionStore, catalog: Catalog, path: str, overwrite: bool, limits: ImportLimits
) -> ImportResult:
    open_ids = {session.session_id for session in catalog.registry}  # read here, not in the thread
    # Every name in use, so an imported session that brings one gets another and names
    # stay resolvable (read here: the thread cannot ask the catalog).
    names = {row.name: row.session_id for row in await store.page(1 << 62, None, None) if row.name}
    names |= {session.name: session.session_id for session in catalog.registry if session.name}

    def is_taken(session_id: str) -> bool:
        return session_id in open_ids or store.journal_exists(session_id)

    try:
        report = await trio.to_thread.run_sync(
            lambda: import_sessions(
                store,
                Path(path),
                overwrite=overwrite,
                is_taken=is_taken,
                names=names,
                limits=limits,
            )
        )
    except OSError as error:
        raise store.storage_error(error, "nothing was imported") from None
    for _, session_id in report.imported:
        await store.note_saved(session_id)  # indexed (and laid out by steps) now
    log.info("sessions_imported", path=path, imported=report.imported, notes=report.notes)
    return ImportResult(
        imported=[ImportedSession(from_id=old, to_id=new) for old, new in report.imported],
        overwritten=report.overwritten,
        notes=report.notes,
    )
