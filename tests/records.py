"""Closed session records written straight into a data dir with the store's own
writer (line layout, as the daemon writes them): many sessions, or long histories,
in a fraction of the time recording them would take. Used by tests and bench/."""

from __future__ import annotations

from pathlib import Path

import msgspec

from daemon.protocol.messages import NULL
from daemon.store.layout import RecordWriter
from daemon.store.records import BlenderInfo, CommandRecord, SessionData, SessionState
from daemon.store.store import new_record


def session_id_for(n: int, stamp: str = "20260101-000000") -> str:
    return f"scene-{stamp}-{n:08x}"


def write_closed(
    sessions_dir: Path,
    session_id: str,
    name: str | None,
    commands: int,
    at: float,
    *,
    result_bytes: int = 0,
) -> int:
    """A closed record of `commands` transform commands (each result padded to about
    `result_bytes`). Returns its size in bytes."""
    head = SessionData(
        session_id=session_id,
        name=name,
        created_at=at,
        last_activity=at,
        closed_at=at + 1,
        blender=BlenderInfo(),
        state=SessionState(objects=["Cube"], scene=NULL),
        command_count=commands,
        restored_from=None,
        snapshot=None,
        last_seq=commands,
    )
    writer = RecordWriter(sessions_dir / f"{session_id}.json", new_record(head))
    padding = "x" * result_bytes
    result = msgspec.Raw(
        msgspec.json.encode({"name": "Cube", "location": [1.0, 2.0, 3.0], "note": padding})
    )
    try:
        for seq in range(1, commands + 1):
            params = b'{"name":"Cube","location":[%d.0,0.0,0.0]}' % (seq % 100)
            writer.add_command(
                CommandRecord(
                    seq=seq,
                    type="transform_object",
                    params=msgspec.Raw(params),
                    status="success",
                    started_at=at + seq * 1e-3,
                    duration_ms=0.2,
                    client_id="bench",
                    result=result,
                )
            )
        return writer.finish()
    except BaseException:
        writer.abort()
        raise
