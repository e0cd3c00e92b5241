"""Fast checks of the shared store's pieces that need no database: what a reply waits
for (replication.JournalCopy), the announcements one daemon passes on from others
(fleet_events.coalesce), and how `watch` prints them. The real thing, with PostgreSQL
and daemons: test_fleet.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from daemon.clients.watching import event_line
from daemon.events import SharedChanged
from daemon.protocol import ProtocolError
from daemon.sessions.fleet_events import coalesce
from daemon.sessions.replication import (
    JournalCopy,
    JournalShipping,
    Start,
    _Batch,
    _resume_point,
)
from daemon.store import JournalWriter
from daemon.store.shared_catalog import SharedCatalog


def _note(session_id: str, daemon: str, change: str, line: int | None = None) -> str:
    return json.dumps({"session_id": session_id, "daemon": daemon, "change": change,
                       "line": line})  # fmt: skip


def test_announcements_are_the_others_newest_per_session_and_change() -> None:
    payloads = [
        _note("s1", "A", "journal", 3), _note("s1", "A", "journal", 9),
        _note("s1", "me", "journal", 4), _note("s2", "A", "saved"), "not json",
        json.dumps({"daemon": "A"}),
    ]  # fmt: skip
    events = coalesce(payloads, own="me")
    assert events == [
        SharedChanged(session_id="s1", daemon="A", change="journal", line=9),
        SharedChanged(session_id="s2", daemon="A", change="saved", line=None),
    ]
    assert event_line(events[0]) == "elsewhere: s1 recorded up to journal line 9 by the daemon A"
    assert event_line(events[1]) == "elsewhere: s2 saved by the daemon A"


async def _copy(tmp_path: Path, backlog: int) -> tuple[JournalShipping, JournalCopy, JournalWriter]:
    journal = JournalWriter(tmp_path / "scene.journal")
    await journal.open()
    shipping = JournalShipping("postgresql://unused", "me", 30.0, lambda session_id: None, backlog)
    shipping.attach("scene", journal)
    copy = shipping.copies["scene"]
    assert journal.replica is copy
    return shipping, copy, journal


def _append(journal: JournalWriter, size: int) -> None:
    assert journal._file is not None
    journal._file.append(b"x" * (size - 1) + b"\n")


async def test_a_reply_waits_for_the_commit_then_for_nothing_while_behind(
    tmp_path: Path,
) -> None:
    shipping, copy, journal = await _copy(tmp_path, backlog=100)
    answered: list[Any] = []
    _append(journal, 50)
    journal.when_replicated(answered.append)
    assert answered == []  # waits for the database
    _append(journal, 50)
    journal.when_replicated(answered.append)
    copy.committed(_batch(end=50))
    assert answered == [None]  # the first is in; the second still waits
    shipping._fall_behind("the database went away")
    assert answered == [None, None]  # released: answered from the local journal
    journal.when_replicated(answered.append)
    assert answered == [None, None, None]  # while behind, at once
    copy.check_room()  # 50 bytes ahead, 100 allowed
    _append(journal, 60)
    with pytest.raises(ProtocolError) as refused:
        copy.check_room()
    assert refused.value.code.value == "storage" and "110 bytes ahead" in refused.value.message
    shipping.behind = False  # caught up
    copy.committed(_batch(end=160))
    copy.check_room()
    await journal.close()


async def test_a_session_taken_over_refuses_what_waits_and_stops_copying(tmp_path: Path) -> None:
    shipping, _, journal = await _copy(tmp_path, backlog=100)
    told: list[tuple[str, str]] = []
    shipping.on_taken_over = lambda session_id, why: told.append((session_id, why))
    answered: list[Any] = []
    _append(journal, 10)
    journal.when_replicated(answered.append)
    shipping.taken_over("scene", "B")
    assert isinstance(answered[0], OSError) and "the daemon B adopted it" in str(answered[0])
    assert told and told[0][0] == "scene" and "scene" not in shipping.copies
    journal.when_replicated(answered.append)
    assert isinstance(answered[1], OSError)  # never waits again
    await journal.close()


def _batch(end: int) -> _Batch:
    return _Batch(end=end, first=1, data=b"", count=0)


def test_an_adopted_journal_s_copy_starts_where_the_database_s_ends(tmp_path: Path) -> None:
    shipping = JournalShipping("postgresql://unused", "me", 30.0, lambda session_id: None)
    shipping.starts_at("scene", Start(offset=500, lines=7, shipped=frozenset({"c/1"})))
    journal = JournalWriter(tmp_path / "scene.journal")
    shipping.attach("scene", journal)
    copy = shipping.copies["scene"]
    assert (copy.offset, copy.lines, copy.shipped) == (500, 7, {"c/1"})


class _Known:
    """A catalog that holds the first `lines` journal lines of a session."""

    def __init__(self, lines: int) -> None:
        self.lines = lines

    def journal_length(self, session_id: str) -> int:
        return self.lines

    def files(self, session_id: str) -> dict[str, str]:
        return {"checkpoints/0000000000.blend": "ab"}


@pytest.mark.parametrize("known", [0, 1, 2, 2999, 3000, 5000])
def test_a_recovered_journal_s_copy_goes_on_after_the_lines_the_database_has(
    tmp_path: Path, known: int
) -> None:
    path = tmp_path / "scene.journal"
    lines = [b'{"n":%d,"pad":"%s"}\n' % (n, b"x" * (n % 700)) for n in range(3000)]  # > 1 MiB
    path.write_bytes(b"".join(lines))
    start = _resume_point(cast(SharedCatalog, _Known(known)), path=path)
    have = min(known, len(lines))
    assert (start.offset, start.lines) == (len(b"".join(lines[:have])), have)
    assert start.known and start.shipped == {"checkpoints/0000000000.blend"}
    assert _resume_point(cast(SharedCatalog, _Known(3)), path=tmp_path / "gone.journal").lines == 0
