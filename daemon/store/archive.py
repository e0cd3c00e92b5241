"""Export and import of sessions as one archive (tar.gz): records, .blend snapshots,
thumbnails, and a manifest with a SHA-256 per file.

Import trusts nothing in the archive: every member must be a regular file named
`manifest.json` or `sessions/<valid session id>.(json|blend|png)` (so no `..`, no
absolute path, no link can reach outside the data dir), listed in the manifest with
a matching checksum, and from a format this daemon reads. Members are read, never
extracted; files are written by this module, atomically, into the sessions dir.
Synchronous: callers run it in a thread.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..protocol.errors import ErrorCode, RemoteProtocolError
from .files import atomic_write, fsync_dir
from .ids import SESSION_ID_PATTERN, new_session_id
from .records import RecordError, decode_record, encode_record
from .store import SessionStore

ARCHIVE_FORMAT = 1
MANIFEST = "manifest.json"
_MEMBER = re.compile(r"^sessions/(" + SESSION_ID_PATTERN.strip("^$") + r")\.(json|blend|png)$",
                     re.ASCII)  # fmt: skip
# One member's size limit: a .blend of a large scene is big, but not this big.
MAX_MEMBER_BYTES = 8 * 1024**3


@dataclass
class ImportReport:
    imported: list[dict[str, str]] = field(default_factory=list)  # {"from": id, "to": id}
    overwritten: list[str] = field(default_factory=list)


def _refuse(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(ErrorCode.INVALID_PARAMS, f"archive refused: {message}")


def export_sessions(store: SessionStore, session_ids: list[str], output: Path) -> int:
    """Write the archive to `output` (temp file, fsync, rename); return its size."""
    if not output.parent.is_dir():
        raise RemoteProtocolError(
            ErrorCode.NOT_FOUND, f"directory {str(output.parent)!r} does not exist"
        )
    manifest: dict[str, object] = {
        "format": ARCHIVE_FORMAT,
        "created_at": time.time(),
        "sessions": [],
    }
    sessions: list[dict[str, object]] = []
    temp = output.with_name(f".{output.name}.partial")
    with tarfile.open(temp, "w:gz") as archive:
        for session_id in session_ids:
            files: dict[str, str] = {}
            for suffix in (".json", ".blend", ".png"):
                path = store.path_for(session_id, suffix)
                if not path.exists():
                    continue
                data = path.read_bytes()
                name = f"sessions/{path.name}"
                _add(archive, name, data)
                files[name] = hashlib.sha256(data).hexdigest()
            sessions.append({"session_id": session_id, "files": files})
        manifest["sessions"] = sessions
        _add(archive, MANIFEST, json.dumps(manifest, indent=2).encode())
    with open(temp, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(temp, output)
    fsync_dir(output.parent)
    return output.stat().st_size


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    archive.addfile(info, io.BytesIO(data))


def _read_members(archive_path: Path) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            for member in archive.getmembers():
                if not member.isfile():
                    raise _refuse(
                        f"member {member.name!r} is not a regular file "
                        "(links and devices are never imported)"
                    )
                if member.name != MANIFEST and not _MEMBER.fullmatch(member.name):
                    raise _refuse(
                        f"member {member.name!r} is not manifest.json or "
                        "sessions/<session id>.(json|blend|png)"
                    )
                if member.size > MAX_MEMBER_BYTES or member.name in members:
                    raise _refuse(f"member {member.name!r} is too big or appears twice")
                extracted = archive.extractfile(member)
                assert extracted is not None
                members[member.name] = extracted.read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise _refuse(f"{archive_path} is not a readable tar.gz archive: {error}") from None
    return members


def import_sessions(store: SessionStore, archive_path: Path, *, overwrite: bool) -> ImportReport:
    """Check the whole archive first, then write; a refused archive writes nothing."""
    if not archive_path.is_file():
        raise RemoteProtocolError(ErrorCode.NOT_FOUND, f"no archive {str(archive_path)!r}")
    members = _read_members(archive_path)
    if MANIFEST not in members:
        raise _refuse("it has no manifest.json")
    try:
        manifest = json.loads(members[MANIFEST])
        version = int(manifest["format"])
        listed = manifest["sessions"]
    except (ValueError, KeyError, TypeError) as error:
        raise _refuse(f"manifest.json is not valid: {error!r}") from None
    if version > ARCHIVE_FORMAT:
        raise _refuse(
            f"format {version} is newer than this daemon reads ({ARCHIVE_FORMAT}); "
            "upgrade blender-scene-sessions to import it"
        )
    checked: dict[str, dict[str, bytes]] = {}
    for entry in listed:
        session_id = entry.get("session_id") if isinstance(entry, dict) else None
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(session_id, str) or not isinstance(files, dict):
            raise _refuse("a manifest entry lacks session_id or files")
        record_name = f"sessions/{session_id}.json"
        if record_name not in files:
            raise _refuse(f"session {session_id!r} has no record in the manifest")
        contents: dict[str, bytes] = {}
        for name, digest in files.items():
            match = _MEMBER.fullmatch(name)
            if match is None or match.group(1) != session_id or name not in members:
                raise _refuse(
                    f"manifest names {name!r}, which is not this session's file in the archive"
                )
            if hashlib.sha256(members[name]).hexdigest() != digest:
                raise _refuse(f"checksum of {name!r} does not match the manifest")
            contents[match.group(2)] = members[name]
        try:
            record = decode_record(contents["json"], f"record {session_id}")
        except RecordError as error:
            raise _refuse(error.message) from None
        if record.session_id != session_id or record.data.session_id != session_id:
            raise _refuse(f"record {session_id} names another session inside")
        checked[session_id] = contents
    unlisted = (
        set(members)
        - {MANIFEST}
        - {f"sessions/{sid}.{kind}" for sid, files in checked.items() for kind in files}
    )
    if unlisted:
        raise _refuse(f"members not in the manifest: {sorted(unlisted)}")
    report = ImportReport()
    for session_id, contents in checked.items():
        target = session_id
        if store.exists(session_id):
            if overwrite:
                report.overwritten.append(session_id)
            else:
                target = new_session_id()
        _write_session(store, session_id, target, contents)
        report.imported.append({"from": session_id, "to": target})
    return report


def _write_session(
    store: SessionStore, source: str, target: str, contents: dict[str, bytes]
) -> None:
    record = decode_record(contents["json"], f"record {source}")
    if target != source:  # keeping both: the copy gets a new id, its files new names
        snapshot = record.data.snapshot
        if snapshot is not None:
            snapshot = msgspec.structs.replace(
                snapshot,
                blend=f"{target}.blend" if snapshot.blend else None,
                thumbnail=f"{target}.png" if snapshot.thumbnail else None,
            )
        data = msgspec.structs.replace(record.data, session_id=target, snapshot=snapshot)
        record = msgspec.structs.replace(record, session_id=target, data=data)
    for kind in ("blend", "png"):
        if kind in contents:
            atomic_write(store.path_for(target, f".{kind}"), contents[kind])
    atomic_write(store.path_for(target), encode_record(record))
