"""Export and import of sessions as one archive (tar.gz): records, .blend snapshots,
thumbnails, and a manifest with a SHA-256 per file.

Import trusts nothing in the archive. It reads the archive as a stream, never
extracting: each member must be a regular file named `manifest.json` or
`sessions/<valid session id>.(json|blend|png)` (so no `..`, no absolute path, no
link can reach outside the data dir); it is copied into a private staging dir while
its SHA-256 is computed, under caps on the total unpacked size, the member count and
the compression ratio (a gzip bomb is refused after a few MB, not after GBs). Only
when every member matches the manifest, and every record is one this daemon reads,
are the files moved into the sessions dir. Synchronous: callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
import shutil
import tarfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec

from ..protocol.errors import DECODE_ERRORS, ErrorCode, RemoteProtocolError
from ..protocol.json_checks import check_json
from ..protocol.limits import (
    IMPORT_MAX_MEMBERS,
    IMPORT_MAX_RATIO,
    IMPORT_MAX_RECORD_BYTES,
    IMPORT_MAX_TOTAL_BYTES,
    IMPORT_RATIO_GRACE_BYTES,
    MAX_SESSION_NAME_CHARS,
)
from .files import atomic_write, ensure_private_dir, fsync_dir, read_file
from .ids import SESSION_ID_PATTERN, is_session_id, new_session_id
from .records import RecordError, SessionRecord, decode_record, encode_record
from .store import SessionStore

ARCHIVE_FORMAT = 1
MANIFEST = "manifest.json"
_MEMBER = re.compile(r"^sessions/(" + SESSION_ID_PATTERN.strip("^$") + r")\.(json|blend|png)$",
                     re.ASCII)  # fmt: skip
COPY_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImportLimits:
    max_total_bytes: int = IMPORT_MAX_TOTAL_BYTES
    max_members: int = IMPORT_MAX_MEMBERS
    max_ratio: int = IMPORT_MAX_RATIO


DEFAULT_IMPORT_LIMITS = ImportLimits()


@dataclass
class ImportReport:
    imported: list[tuple[str, str]] = field(default_factory=list)  # (from id, to id)
    overwritten: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _ManifestEntry(msgspec.Struct, forbid_unknown_fields=True):
    session_id: str
    files: dict[str, str]


class _Manifest(msgspec.Struct):
    format: int
    sessions: list[_ManifestEntry]
    created_at: float = 0.0


_manifest_decoder = msgspec.json.Decoder(_Manifest)


def _refuse(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(ErrorCode.INVALID_PARAMS, f"archive refused: {message}")


# --- export ---------------------------------------------------------------------------


def export_sessions(
    path_for: Callable[[str, str], Path], session_ids: list[str], output: Path
) -> int:
    """Write the archive to `output` (temp file, fsync, rename); return its size."""
    if not output.parent.is_dir():
        raise RemoteProtocolError(
            ErrorCode.NOT_FOUND, f"directory {str(output.parent)!r} does not exist"
        )
    sessions: list[dict[str, object]] = []
    temp = output.with_name(f".{output.name}.{secrets.token_hex(4)}.partial")
    try:
        with tarfile.open(temp, "w:gz") as archive:
            for session_id in session_ids:
                files: dict[str, str] = {}
                for suffix in (".json", ".blend", ".png"):
                    path = path_for(session_id, suffix)
                    try:
                        data = read_file(path)
                    except FileNotFoundError:
                        continue
                    name = f"sessions/{path.name}"
                    _add(archive, name, data)
                    files[name] = hashlib.sha256(data).hexdigest()
                sessions.append({"session_id": session_id, "files": files})
            manifest = {"format": ARCHIVE_FORMAT, "created_at": time.time(), "sessions": sessions}
            _add(archive, MANIFEST, msgspec.json.format(msgspec.json.encode(manifest)))
        with open(temp, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(output.parent)
    return output.stat().st_size


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    archive.addfile(info, io.BytesIO(data))


# --- import ---------------------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """The archive file, counting the compressed bytes read (for the ratio cap)."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self.count = 0

    def readable(self) -> bool:
        return True

    # typeshed types the buffer as any writable buffer; io hands a memoryview.
    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


@dataclass
class _Staged:
    path: Path
    sha256: str
    size: int


def import_sessions(
    store: SessionStore,
    archive_path: Path,
    *,
    overwrite: bool,
    is_taken: Callable[[str], bool],
    names: dict[str, str] | None = None,
    limits: ImportLimits = DEFAULT_IMPORT_LIMITS,
) -> ImportReport:
    """Check the whole archive first, then write; a refused archive writes nothing.

    `is_taken(id)` says whether an id belongs to a session that is open (or has a
    journal): such an id is never written, whatever `overwrite` says; its session is
    imported under a new id. `names`: the session names in use (name -> id); an
    imported session whose name another session has is renamed `<name> (imported)`
    (or `(imported 2)`...), so every name still names one session.
    """
    staging = store.staging_dir / f"import-{secrets.token_hex(6)}"
    ensure_private_dir(staging)
    try:
        staged = _stage(archive_path, staging, limits)
        checked = _check(staged)
        return _write(
            store, checked, staged, overwrite=overwrite, is_taken=is_taken, names=names or {}
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage(archive_path: Path, staging: Path, limits: ImportLimits) -> dict[str, _Staged]:
    """Copy every member into `staging`, checking names and caps as the stream goes."""
    try:
        raw = open(archive_path, "rb")  # noqa: SIM115  # closed below, after the stream
    except FileNotFoundError:
        raise RemoteProtocolError(
            ErrorCode.NOT_FOUND, f"no archive {str(archive_path)!r}"
        ) from None
    except OSError as error:
        raise _refuse(f"{archive_path} cannot be read: {error.strerror or error}") from None
    staged: dict[str, _Staged] = {}
    counted = _CountingReader(raw)
    total = 0
    try:
        with tarfile.open(fileobj=io.BufferedReader(counted), mode="r|*") as archive:
            for member in archive:
                name = member.name
                if not member.isfile():
                    raise _refuse(
                        f"member {name!r} is not a regular file "
                        "(links and devices are never imported)"
                    )
                if name != MANIFEST and not _MEMBER.fullmatch(name):
                    raise _refuse(
                        f"member {name!r} is not manifest.json or "
                        "sessions/<session id>.(json|blend|png)"
                    )
                if name in staged:
                    raise _refuse(f"member {name!r} appears twice")
                if len(staged) >= limits.max_members:
                    raise _refuse(f"it has more than {limits.max_members} files")
                if total + member.size > limits.max_total_bytes:
                    raise _too_big(limits)
                source = archive.extractfile(member)
                assert source is not None  # a regular file always has contents
                target = staging / f"{len(staged)}"
                digest = hashlib.sha256()
                with open(target, "xb") as out:
                    while chunk := source.read(COPY_CHUNK_BYTES):
                        total += len(chunk)
                        if total > limits.max_total_bytes:
                            raise _too_big(limits)
                        if total > IMPORT_RATIO_GRACE_BYTES and total > limits.max_ratio * max(
                            counted.count, 1
                        ):
                            raise _refuse(
                                f"it unpacks to over {limits.max_ratio} times its compressed "
                                "size (a compression bomb?); nothing was imported"
                            )
                        digest.update(chunk)
                        out.write(chunk)
                staged[name] = _Staged(target, digest.hexdigest(), member.size)
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise  # our disk: a storage error, not the archive's fault
        raise _refuse(f"{archive_path} is not a readable tar.gz archive ({error})") from None
    finally:
        raw.close()
    return staged


def _too_big(limits: ImportLimits) -> RemoteProtocolError:
    return _refuse(
        f"it unpacks to more than {limits.max_total_bytes} bytes (the import limit; "
        "raise it with --import-max-bytes)"
    )


def _check(staged: dict[str, _Staged]) -> dict[str, SessionRecord]:
    """The manifest lists exactly the members, with their checksums; each record is
    one this daemon reads. Returns the records by session id."""
    if MANIFEST not in staged:
        raise _refuse("it has no manifest.json")
    try:
        manifest = _manifest_decoder.decode(read_file(staged[MANIFEST].path))
    except DECODE_ERRORS as error:
        raise _refuse(f"manifest.json is not valid: {error}") from None
    if manifest.format > ARCHIVE_FORMAT:
        raise _refuse(
            f"format {manifest.format} is newer than this daemon reads ({ARCHIVE_FORMAT}); "
            "upgrade blender-scene-sessions to import it"
        )
    records: dict[str, SessionRecord] = {}
    listed: set[str] = {MANIFEST}
    for entry in manifest.sessions:
        session_id = entry.session_id
        if not is_session_id(session_id) or session_id in records:
            raise _refuse(f"manifest names session {session_id[:80]!r} twice or wrongly")
        if f"sessions/{session_id}.json" not in entry.files:
            raise _refuse(f"session {session_id!r} has no record in the manifest")
        for name, digest in entry.files.items():
            match = _MEMBER.fullmatch(name)
            if match is None or match.group(1) != session_id or name not in staged:
                raise _refuse(
                    f"manifest names {name[:120]!r}, which is not this session's file in "
                    "the archive"
                )
            if staged[name].sha256 != digest:
                raise _refuse(f"checksum of {name!r} does not match the manifest")
            listed.add(name)
        records[session_id] = _checked_record(staged[f"sessions/{session_id}.json"], session_id)
    unlisted = sorted(set(staged) - listed)
    if unlisted:
        raise _refuse(f"members not in the manifest: {unlisted[:10]}")
    return records


def _checked_record(member: _Staged, session_id: str) -> SessionRecord:
    if member.size > IMPORT_MAX_RECORD_BYTES:
        raise _refuse(f"record {session_id} is {member.size} bytes, over {IMPORT_MAX_RECORD_BYTES}")
    try:
        record = decode_record(read_file(member.path), f"record {session_id}")
        for command in record.data.commands:
            what = f"record {session_id}, command {command.seq}"
            check_json(command.params, what)
            check_json(command.result, what)
        for key, value in record.data.data.items():
            check_json(value, f"record {session_id}, data {key!r}")
        check_json(record.data.state.scene, f"record {session_id}, scene")
    except (RecordError, RemoteProtocolError) as error:
        raise _refuse(error.message) from None
    if record.session_id != session_id or record.data.session_id != session_id:
        raise _refuse(f"record {session_id} names another session inside")
    return record


def _write(
    store: SessionStore,
    records: dict[str, SessionRecord],
    staged: dict[str, _Staged],
    *,
    overwrite: bool,
    is_taken: Callable[[str], bool],
    names: dict[str, str],
) -> ImportReport:
    report = ImportReport()
    now = time.time()
    for session_id, record in records.items():
        target = session_id
        if is_taken(session_id):
            target = new_session_id()
            report.notes.append(
                f"{session_id} is open in this daemon: imported as {target} (an open "
                "session is never overwritten)"
            )
        elif store.exists(session_id):
            if overwrite:
                report.overwritten.append(session_id)
            else:
                target = new_session_id()
        for kind in ("blend", "png"):
            member = staged.get(f"sessions/{session_id}.{kind}")
            if member is not None:
                os.replace(member.path, store.path_for(target, f".{kind}"))
        fsync_dir(store.sessions_dir)
        retargeted = _retargeted(record, target, now)
        name = _free_name(retargeted.data.name, target, names)
        if name != retargeted.data.name:
            report.notes.append(
                f"{session_id}: the name {retargeted.data.name!r} is taken here: imported as "
                f"{name!r}"
            )
            data = msgspec.structs.replace(retargeted.data, name=name)
            retargeted = msgspec.structs.replace(retargeted, data=data)
        if name:
            names[name] = target
        atomic_write(store.path_for(target), encode_record(retargeted))
        report.imported.append((session_id, target))
    return report


def _free_name(name: str | None, target: str, names: dict[str, str]) -> str | None:
    """`name`, or `<name> (imported)`, `(imported 2)`... when another session has it."""
    if not name or names.get(name, target) == target:
        return name
    base = f"{name[: MAX_SESSION_NAME_CHARS - 20]} (imported"
    for attempt in range(1, 10_000):
        candidate = f"{base})" if attempt == 1 else f"{base} {attempt})"
        if names.get(candidate, target) == target:
            return candidate
    return None


def _retargeted(record: SessionRecord, target: str, imported_at: float) -> SessionRecord:
    """The record under its id in this data dir, stamped with the time of the import
    (cleanup counts a session's age from there, not from its closing elsewhere)."""
    data = msgspec.structs.replace(record.data, session_id=target, imported_at=imported_at)
    snapshot = data.snapshot
    if snapshot is not None and target != record.session_id:
        snapshot = msgspec.structs.replace(
            snapshot,
            blend=f"{target}.blend" if snapshot.blend else None,
            thumbnail=f"{target}.png" if snapshot.thumbnail else None,
        )
        data = msgspec.structs.replace(data, snapshot=snapshot)
    return msgspec.structs.replace(record, session_id=target, data=data)
