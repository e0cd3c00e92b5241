"""`blender-session migrate`: a data dir's saved sessions into PostgreSQL (`--to`), or
the database's into a data dir (`--from`), each checked after it is written: the record
and every file read back and compared by SHA-256, and the counts compared.

Saved (closed) sessions only: an open one (a journal) belongs to its daemon. Into a data
dir only while no daemon runs on it (its lock is taken for the whole migration); from
one, at any time (records and files are only read).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..store import RecordError, is_session_id
from ..store.datadir import DataDir
from ..store.files import atomic_write, ensure_private_dir, read_file
from ..store.layout import read_head
from ..store.shared_catalog import RECORD_FILE
from .catalog import PgCatalog, saved_row

CHECKPOINTS = ".checkpoints"


@dataclass
class MigrationReport:
    direction: str  # "to" the database, or "from" it
    sessions: list[str] = field(default_factory=list)  # migrated and checked
    skipped: list[str] = field(default_factory=list)  # with the reason
    files: int = 0
    bytes: int = 0
    checked: int = 0  # records and files read back with the same SHA-256


def local_files(sessions_dir: Path, session_id: str) -> dict[str, Path]:
    """A saved session's files beside its record: name in the database -> path."""
    files = {
        name: sessions_dir / f"{session_id}{suffix}"
        for name, suffix in (("blend", ".blend"), ("png", ".png"))
        if (sessions_dir / f"{session_id}{suffix}").is_file()
    }
    checkpoints = sessions_dir / f"{session_id}{CHECKPOINTS}"
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        for entry in sorted(os.listdir(checkpoints)):
            if (checkpoints / entry).is_file():
                files[f"checkpoints/{entry}"] = checkpoints / entry
    return files


def to_database(data_dir: Path, url: str) -> MigrationReport:
    report = MigrationReport("to")
    sessions_dir = data_dir / "sessions"
    catalog = PgCatalog(url)
    try:
        for path in sorted(sessions_dir.glob("scene-*.json")):
            session_id = path.stem
            try:
                record_bytes = read_file(path)
                data = read_head(path, f"record {path.name}")[0].data
            except (RecordError, OSError) as error:
                report.skipped.append(f"{session_id}: {error}")
                continue
            files = {
                name: read_file(file)
                for name, file in local_files(sessions_dir, session_id).items()
            }
            catalog.put_record(record_bytes, saved_row(data), files)
            _check_copy(
                report, session_id, {RECORD_FILE: record_bytes, **files},
                functools.partial(catalog.file, session_id),
            )  # fmt: skip
        for journal in sorted(sessions_dir.glob("scene-*.journal")):
            report.skipped.append(f"{journal.stem}: open (a journal): its daemon holds it")
    finally:
        catalog.close()
    return report


def from_database(url: str, data_dir: Path) -> MigrationReport:
    report = MigrationReport("from")
    directory = DataDir(data_dir)
    directory.check_and_create()
    directory.lock()  # DataDirLocked: a daemon runs on it
    try:
        sessions_dir = data_dir / "sessions"
        ensure_private_dir(sessions_dir)
        catalog = PgCatalog(url)
        try:
            for row in catalog.sessions():
                session_id = row.session_id
                if row.status != "closed" or not is_session_id(session_id):
                    report.skipped.append(f"{session_id}: {row.status}")
                    continue
                target = sessions_dir / f"{session_id}.json"
                if target.exists():
                    report.skipped.append(f"{session_id}: already in {data_dir}")
                    continue
                contents = {
                    name: catalog.file(session_id, name) for name in catalog.files(session_id)
                }
                written: dict[str, bytes] = {}
                for name, data in contents.items():
                    if data is None or name == RECORD_FILE:
                        continue
                    path = _local_path(sessions_dir, session_id, name)
                    if path is None:
                        report.skipped.append(f"{session_id}: a file named {name!r} is not ours")
                        continue
                    if name.startswith("checkpoints/"):
                        ensure_private_dir(path.parent)
                    atomic_write(path, data)
                    written[name] = data
                record = contents.get(RECORD_FILE)
                if record is None:
                    report.skipped.append(f"{session_id}: no record in the database")
                    continue
                atomic_write(target, record)  # last: a record names files that are there
                _check_copy(
                    report, session_id, {RECORD_FILE: record, **written},
                    functools.partial(_read_local, sessions_dir, session_id),
                )  # fmt: skip
        finally:
            catalog.close()
    finally:
        directory.unlock()
    return report


def _local_path(sessions_dir: Path, session_id: str, name: str) -> Path | None:
    if name == RECORD_FILE:
        return sessions_dir / f"{session_id}.json"
    if name in ("blend", "png"):
        return sessions_dir / f"{session_id}.{name}"
    if name.startswith("checkpoints/"):
        entry = name.removeprefix("checkpoints/")
        if entry and "/" not in entry and not entry.startswith("."):
            return sessions_dir / f"{session_id}{CHECKPOINTS}" / entry
    return None


def _read_local(sessions_dir: Path, session_id: str, name: str) -> bytes | None:
    path = _local_path(sessions_dir, session_id, name)
    try:
        return read_file(path) if path is not None else None
    except FileNotFoundError:
        return None


def _check_copy(
    report: MigrationReport,
    session_id: str,
    sent: dict[str, bytes],
    read_back: Callable[[str], bytes | None],
) -> None:
    """Every file of a session, read back where it went, has the same SHA-256."""
    for name, data in sent.items():
        copy = read_back(name)
        if copy is None or hashlib.sha256(copy).digest() != hashlib.sha256(data).digest():
            raise RuntimeError(f"{session_id}: {name} did not arrive intact; nothing is deleted")
        report.checked += 1
        report.files += 1
        report.bytes += len(data)
    report.sessions.append(session_id)
