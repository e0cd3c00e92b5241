"""Export and import: a round trip through the daemon, id clashes (keep both or
overwrite), and crafted archives that must be refused without writing anything."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from daemon.protocol import RemoteProtocolError
from daemon.store import SessionStore
from daemon.store.archive import ImportLimits, import_sessions

from .fake_addon import FakeAddon
from .helpers import AsyncClient, local_store, running_daemon, token_of
from .test_store import make_data

SESSION = "scene-20260101-000000-0000abcd"


async def test_export_import_round_trip_keep_both_and_overwrite(
    tmp_path: Path, fake: FakeAddon
) -> None:
    data_dir = tmp_path / "data"
    store = local_store(data_dir)
    await store.save(make_data(SESSION, name="exported"))
    store.path_for(SESSION, ".blend").write_bytes(b"BLENDER-snapshot")
    store.path_for(SESSION, ".png").write_bytes(b"\x89PNG-thumb")
    archive = tmp_path / "out.tar.gz"
    async with running_daemon(data_dir, fake.port) as daemon:
        assert daemon.control_port is not None
        client = await AsyncClient.connect(daemon.control_port, token_of(daemon))
        exported = await client.ok(
            "session.export", {"session_ids": ["exported"], "path": str(archive)}
        )
        assert exported["session_ids"] == [SESSION] and exported["bytes"] == archive.stat().st_size
        with tarfile.open(archive) as tar:
            names = sorted(tar.getnames())
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert names == [
            "manifest.json",
            f"sessions/{SESSION}.blend",
            f"sessions/{SESSION}.json",
            f"sessions/{SESSION}.png",
        ]
        assert manifest["format"] == 1
        assert (
            manifest["sessions"][0]["files"][f"sessions/{SESSION}.blend"]
            == hashlib.sha256(b"BLENDER-snapshot").hexdigest()
        )

        kept = await client.ok("session.import", {"path": str(archive)})
        (copy,) = kept["imported"]
        assert copy["from_id"] == SESSION and copy["to_id"] != SESSION
        shown = await client.ok("session.show", {"session_id": copy["to_id"]})
        assert shown["data"]["session_id"] == copy["to_id"]
        # Names stay resolvable: the copy took another one, and both names find theirs.
        assert shown["data"]["name"] == "exported (imported)"
        assert any("'exported' is taken here" in note for note in kept["notes"])
        by_name = await client.ok("session.show", {"session_id": "exported (imported)"})
        assert by_name["data"]["session_id"] == copy["to_id"]
        assert store.path_for(copy["to_id"], ".blend").read_bytes() == b"BLENDER-snapshot"
        replaced = await client.ok("session.import", {"path": str(archive), "overwrite": True})
        assert replaced["overwritten"] == [SESSION]

        await client.ok("session.delete", {"session_id": SESSION})
        back = await client.ok("session.import", {"path": str(archive)})
        assert back["imported"] == [{"from_id": SESSION, "to_id": SESSION}]
        assert (await client.ok("session.show", {"session_id": SESSION}))["data"][
            "name"
        ] == "exported"
        await client.aclose()


def _crafted(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _manifest(files: dict[str, bytes], version: int = 1) -> tuple[tarfile.TarInfo, bytes]:
    body = {
        "format": version,
        "sessions": [
            {
                "session_id": SESSION,
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
            }
        ],
    }
    return _file("manifest.json", json.dumps(body).encode())


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, b""


RECORD = b"{}"  # replaced per test by a real record


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("dotdot", "is not manifest.json or sessions/"),
        ("absolute", "is not manifest.json or sessions/"),
        ("symlink", "not a regular file"),
        ("symlink_outside", "not a regular file"),
        ("hardlink", "not a regular file"),
        ("newer_format", "format 2 is newer"),
        ("bad_checksum", "checksum"),
        ("unlisted_member", "not in the manifest"),
        ("bad_id", "is not manifest.json or sessions/"),
        ("not_an_archive", "not a readable tar.gz"),
    ],
)
def test_crafted_archives_are_refused_and_write_nothing(
    tmp_path: Path, case: str, fragment: str
) -> None:
    store = local_store(tmp_path / "data")
    record = json.dumps(
        {"format": 1, "session_id": SESSION, "saved_at": "x", "data": json.loads(_record_json())}
    ).encode()
    good = {f"sessions/{SESSION}.json": record}
    hard = tarfile.TarInfo(f"sessions/{SESSION}.png")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "/etc/passwd"
    members = {
        "dotdot": [
            _manifest(good),
            *(_file(n, d) for n, d in good.items()),
            _file("../../escaped.json", b"x"),
        ],
        "absolute": [_manifest(good), _file(f"/tmp/{SESSION}.json", record)],
        "symlink": [
            _manifest(good),
            _file(f"sessions/{SESSION}.json", record),
            _symlink(f"sessions/{SESSION}.png", f"{SESSION}.json"),
        ],
        "symlink_outside": [_manifest(good), _symlink(f"sessions/{SESSION}.json", "/etc/passwd")],
        "hardlink": [_manifest(good), _file(f"sessions/{SESSION}.json", record), (hard, b"")],
        "newer_format": [_manifest(good, version=2), _file(f"sessions/{SESSION}.json", record)],
        "bad_checksum": [_manifest(good), _file(f"sessions/{SESSION}.json", record + b" ")],
        "unlisted_member": [
            _manifest(good),
            _file(f"sessions/{SESSION}.json", record),
            _file(f"sessions/{SESSION}.blend", b"extra"),
        ],
        "bad_id": [_manifest(good), _file("sessions/scene-x.json", record)],
    }
    archive = tmp_path / "crafted.tar.gz"
    if case == "not_an_archive":
        archive.write_bytes(b"PK\x03\x04 not a tar")
    else:
        _crafted(archive, members[case])
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(RemoteProtocolError) as caught:
        import_sessions(store, archive, overwrite=True, is_taken=lambda session_id: False)
    assert caught.value.code.value == "invalid_params" and fragment in caught.value.message
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/escaped.json").exists() and not (tmp_path / "escaped.json").exists()
    assert os.listdir(store.sessions_dir) == []


def _record_json() -> str:
    import msgspec

    return msgspec.json.encode(make_data(SESSION)).decode()


def _valid_record() -> bytes:
    return json.dumps(
        {"format": 1, "session_id": SESSION, "saved_at": "x", "data": json.loads(_record_json())}
    ).encode()


DEFAULT_LIMITS = ImportLimits()


def _refused(store: SessionStore, archive: Path, limits: ImportLimits = DEFAULT_LIMITS) -> str:
    """Import `archive`, which must be refused with invalid_params writing nothing."""
    with pytest.raises(RemoteProtocolError) as caught:
        import_sessions(
            store, archive, overwrite=True, is_taken=lambda session_id: False, limits=limits
        )
    assert caught.value.code.value == "invalid_params", caught.value
    assert os.listdir(store.sessions_dir) == [] and os.listdir(store.staging_dir) == []
    return caught.value.message


@pytest.mark.parametrize(
    "manifest",
    [
        b"[]",
        b'{"format": 1, "sessions": "scene-20260101-000000-0000abcd"}',
        b'{"format": 1, "sessions": [["not", "an", "entry"]]}',
        b'{"format": "one", "sessions": []}',
        b'{"format": 1, "sessions": [{"session_id": 5, "files": {}}]}',
        b'{"format": 1, "sessions": [{"session_id": "x", "files": []}]}',
        b"{not json",
    ],
)
def test_malformed_manifest_is_invalid_params_not_internal(tmp_path: Path, manifest: bytes) -> None:
    store = local_store(tmp_path / "data")
    archive = tmp_path / "bad-manifest.tar.gz"
    _crafted(archive, [_file("manifest.json", manifest), _file(f"sessions/{SESSION}.json", b"{}")])
    message = _refused(store, archive)
    assert "manifest.json is not valid" in message or "names session" in message


def test_gzip_bomb_is_refused_early_with_bounded_memory(tmp_path: Path) -> None:
    """1 MiB of gzip that unpacks to 1 GiB: refused after a few tens of MB, quickly."""
    store = local_store(tmp_path / "data")
    archive = tmp_path / "bomb.tar.gz"
    size = 1024**3
    info = tarfile.TarInfo(f"sessions/{SESSION}.blend")
    info.size = size
    with tarfile.open(archive, "w:gz", compresslevel=9) as tar:

        class Zeros(io.RawIOBase):
            left = size

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
                count = min(len(buffer), self.left)
                buffer[:count] = bytes(count)
                self.left -= count
                return count

        tar.addfile(info, io.BufferedReader(Zeros()))
    assert archive.stat().st_size < 2 * 1024**2
    tracemalloc.start()
    began = time.monotonic()
    message = _refused(store, archive)
    took_s = time.monotonic() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "compression bomb" in message
    assert took_s < 10, took_s  # generous: a 2-CPU machine shared with the suite
    assert peak < 64 * 1024**2, peak


def test_archive_over_the_member_or_size_caps_is_refused(tmp_path: Path) -> None:
    store = local_store(tmp_path / "data")
    record = _valid_record()
    archive = tmp_path / "many.tar.gz"
    _crafted(archive, [_manifest({f"sessions/{SESSION}.json": record}),
                       _file(f"sessions/{SESSION}.json", record)])  # fmt: skip
    assert "more than 1 files" in _refused(store, archive, ImportLimits(max_members=1))
    assert "the import limit" in _refused(store, archive, ImportLimits(max_total_bytes=100))


def test_record_with_unstorable_values_is_refused(tmp_path: Path) -> None:
    store = local_store(tmp_path / "data")
    record = _valid_record().replace(b'"params": {"kind": "cube"}', b'"params": {"kind": 1e400}')
    assert b"1e400" in record
    archive = tmp_path / "unstorable.tar.gz"
    _crafted(archive, [_manifest({f"sessions/{SESSION}.json": record}),
                       _file(f"sessions/{SESSION}.json", record)])  # fmt: skip
    assert "cannot be stored" in _refused(store, archive)


def test_an_id_that_is_taken_is_imported_under_a_new_one_even_with_overwrite(
    tmp_path: Path,
) -> None:
    store = local_store(tmp_path / "data")
    record = _valid_record()
    archive = tmp_path / "clash.tar.gz"
    _crafted(archive, [_manifest({f"sessions/{SESSION}.json": record}),
                       _file(f"sessions/{SESSION}.json", record)])  # fmt: skip
    report = import_sessions(store, archive, overwrite=True, is_taken={SESSION}.__contains__)
    ((source, target),) = report.imported
    assert source == SESSION and target != SESSION and report.overwritten == []
    assert "is open in this daemon" in report.notes[0]
    assert not store.exists(SESSION) and store.exists(target)
