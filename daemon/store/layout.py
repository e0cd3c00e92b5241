"""The session record on disk, laid out so its history can be read a step at a time.

The record is the JSON document of PROTOCOL.md §3, written with one history entry per
line (JSON does not mind the newlines):

    {"format":1,"session_id":"…","saved_at":"…","data":{…every other field…,"timeline":[
    {timeline entry}
    ,{timeline entry}
    ],"commands":[
    {command}
    ,{command}
    ]}}

The first line holds everything but the history, so a listing reads one line, not
the whole file. Beside the record, `<id>.steps` maps each step (`seq`) to where its
line is (`StepIndex`): a page of a million-step history is a binary search and a few
reads. The index is derived: when it is missing or does not match the record's size
and mtime, it is rebuilt from the record's lines. A record written in one line (by
an older daemon, or by hand) is still read whole, and rewritten in this layout when
the store first indexes it.

Long (450 lines) because writing, checking and reading the layout and its step index
must agree byte for byte: they live in one place.
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import os
import secrets
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from ..protocol.errors import DECODE_ERRORS, ErrorCode
from .files import UnsafePathError, fsync_dir, write_all
from .records import (
    CommandRecord,
    RecordError,
    SessionRecord,
    TimelineEntry,
    check_format,
)

_NOFOLLOW = os.O_NOFOLLOW
_HISTORY_SUFFIX = b'"timeline":[],"commands":[]}}'
TIMELINE_OPEN = b'"timeline":['
COMMANDS_OPEN = b'],"commands":['
TAIL = b"]}}\n"
READ_CHUNK_BYTES = 1 << 20
# A first line longer than this is not a head (a record in one line): read it whole.
MAX_HEAD_BYTES = 256 << 20

StepKind = Literal[1, 2]  # the kind of a step's line in the step index
COMMAND: StepKind = 1
TIMELINE: StepKind = 2

_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(CommandRecord)
_timeline_decoder: msgspec.json.Decoder[TimelineEntry] = msgspec.json.Decoder(TimelineEntry)
_record_decoder = msgspec.json.Decoder(SessionRecord)


class _Seq(msgspec.Struct):
    seq: int


_seq_decoder = msgspec.json.Decoder(_Seq)


def encode_head(record: SessionRecord) -> bytes:
    """The first line of a record: everything but its history, up to where the
    timeline's entries start. `record.data` must have an empty history."""
    encoded = _encoder.encode(record)
    if not encoded.endswith(_HISTORY_SUFFIX):
        raise ValueError("the record's history must be empty, and come last")
    return encoded[: -len(_HISTORY_SUFFIX)] + TIMELINE_OPEN + b"\n"


def head_as_json(first_line: bytes) -> bytes:
    """A record's first line as a JSON document of its own (the history empty)."""
    return first_line.rstrip(b"\n")[: -len(TIMELINE_OPEN)] + _HISTORY_SUFFIX


# --- writing --------------------------------------------------------------------------


@dataclass(slots=True)
class _Step:
    seq: int
    kind: StepKind
    offset: int
    length: int


class RecordWriter:
    """Writes a record line by line into a temp file, then puts it in place atomically
    (fsync, rename, fsync dir) with its step index. Blocking: run it in a thread.
    Timeline entries come first, then commands, each in `seq` order."""

    def __init__(self, path: Path, head: SessionRecord) -> None:
        self.path = path
        self._temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        self._fd: int | None = os.open(
            self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644
        )
        self._buffer = bytearray()
        self._offset = 0
        self._section: StepKind = TIMELINE
        self._first_in_section = True
        self._steps: list[_Step] = []
        self._write(encode_head(head))

    def _write(self, data: bytes) -> None:
        self._buffer += data
        self._offset += len(data)
        if len(self._buffer) >= READ_CHUNK_BYTES:
            self._drain()

    def _drain(self) -> None:
        assert self._fd is not None
        write_all(self._fd, self._buffer)
        self._buffer.clear()

    def add(self, kind: StepKind, seq: int, entry: bytes) -> None:
        """One entry's JSON (a command record or a timeline entry), on its own line."""
        if kind == COMMAND and self._section == TIMELINE:
            self._write(COMMANDS_OPEN + b"\n")
            self._section, self._first_in_section = COMMAND, True
        elif kind != self._section:
            raise ValueError("timeline entries come before commands")
        if not self._first_in_section:
            self._write(b",")
        self._first_in_section = False
        self._steps.append(_Step(seq, kind, self._offset, len(entry)))
        self._write(entry + b"\n")

    def add_command(self, command: CommandRecord) -> None:
        self.add(COMMAND, command.seq, _encoder.encode(command))

    def add_timeline(self, entry: TimelineEntry) -> None:
        self.add(TIMELINE, entry.seq, _encoder.encode(entry))

    def finish(self) -> int:
        """Close the record, put it in place with its step index. Returns its size."""
        if self._section == TIMELINE:
            self._write(COMMANDS_OPEN + b"\n")
        self._write(TAIL)
        self._drain()
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        os.replace(self._temp, self.path)
        fsync_dir(self.path.parent)
        write_step_index(self.path, self._steps)
        return self._offset

    def abort(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self._temp)


def write_record(path: Path, record: SessionRecord) -> None:
    """Write a whole record (its history in memory) in the line layout. Blocking."""
    data = record.data
    head = msgspec.structs.replace(
        record, data=msgspec.structs.replace(data, timeline=[], commands=[])
    )
    writer = RecordWriter(path, head)
    try:
        for entry in sorted(data.timeline, key=lambda item: item.seq):
            writer.add_timeline(entry)
        for command in data.commands:
            writer.add_command(command)
        writer.finish()
    except BaseException:
        writer.abort()
        raise


# --- reading --------------------------------------------------------------------------


def read_first_line(path: Path) -> tuple[bytes, bool]:
    """The record's first line, and whether it is a head (the line layout). A record
    in one line is returned whole. Raises OSError (UnsafePathError for a link)."""
    fd = _open_record(path)
    try:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, READ_CHUNK_BYTES)
            if not chunk:
                break
            newline = chunk.find(b"\n")
            if newline != -1:
                chunks.append(chunk[: newline + 1])
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_HEAD_BYTES:
                chunks.append(_read_rest(fd))
                break
        line = b"".join(chunks)
    finally:
        os.close(fd)
    return line, line.rstrip(b"\n").endswith(TIMELINE_OPEN)


def _read_rest(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, READ_CHUNK_BYTES):
        parts.append(chunk)
    return b"".join(parts)


def read_head(path: Path, what: str) -> tuple[SessionRecord, bool]:
    """The record without its history (a record in one line: with it), and whether it
    is in the line layout. Raises RecordError (damaged, newer, a link), OSError."""
    try:
        line, is_head = read_first_line(path)
    except UnsafePathError as error:
        raise RecordError(ErrorCode.INTERNAL, error.strerror or str(error)) from None
    document = head_as_json(line) if is_head else line
    check_format(document, what)
    try:
        return _record_decoder.decode(document), is_head
    except DECODE_ERRORS as error:
        raise RecordError(ErrorCode.INTERNAL, f"{what} is damaged: {error}") from None


def _open_record(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError as error:
        if error.errno == 40:  # ELOOP: the last component is a link
            raise UnsafePathError(
                error.errno,
                f"{path.name} is a symbolic link; the daemon never follows links in its "
                "data dir (remove it)",
                str(path),
            ) from None
        raise


def check_complete(path: Path) -> None:
    """Raise RecordError unless the record ends as the line layout ends (a record cut
    short reads a whole first line all the same)."""
    fd = _open_record(path)
    try:
        size = os.fstat(fd).st_size
        end = os.pread(fd, len(TAIL), max(size - len(TAIL), 0))
    finally:
        os.close(fd)
    if end != TAIL:
        raise RecordError(
            ErrorCode.INTERNAL, f"record {path.name} is damaged: it ends before its history does"
        )


def decode_step(kind: int, line: bytes) -> CommandRecord | TimelineEntry:
    """One history line (without its separator comma) as what it records."""
    if kind == COMMAND:
        return _command_decoder.decode(line)
    return _timeline_decoder.decode(line)


def iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(offset, line without its newline, whether it had one) for every line of a
    file, streamed; only the last line can lack its newline (a torn tail)."""
    fd = _open_record(path)
    try:
        offset = 0
        pending = b""
        while chunk := os.read(fd, READ_CHUNK_BYTES):
            data = pending + chunk if pending else chunk
            start = 0
            while (newline := data.find(b"\n", start)) != -1:
                yield offset + start, data[start:newline], True
                start = newline + 1
            offset += start
            pending = data[start:]
        if pending:
            yield offset, pending, False
    finally:
        os.close(fd)


# --- the step index -------------------------------------------------------------------

_MAGIC = b"BSSTEPS1"
_HEADER = struct.Struct("<8sqqq")  # magic, record size, record mtime_ns, count
_ENTRY = struct.Struct("<qqII")  # seq, offset, length, kind


def step_index_path(record: Path) -> Path:
    return record.with_name(record.name.removesuffix(".json") + ".steps")


def write_step_index(record: Path, steps: Sequence[_Step]) -> None:
    """Write `<id>.steps` for the record as it is on disk now (its size and mtime)."""
    info = os.stat(record, follow_symlinks=False)
    ordered = sorted(steps, key=lambda step: step.seq)
    path = step_index_path(record)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb", buffering=READ_CHUNK_BYTES) as out:
            out.write(_HEADER.pack(_MAGIC, info.st_size, info.st_mtime_ns, len(ordered)))
            for step in ordered:
                out.write(_ENTRY.pack(step.seq, step.offset, step.length, step.kind))
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def build_step_index(record: Path) -> None:
    """Rebuild `<id>.steps` from a record in the line layout. Blocking; streams."""
    steps: list[_Step] = []
    section: StepKind | None = None
    for offset, line, _ in iter_lines(record):
        if section is None:
            if not line.endswith(TIMELINE_OPEN):
                raise RecordError(ErrorCode.INTERNAL, f"{record.name} is not in the line layout")
            section = TIMELINE
            continue
        if line == COMMANDS_OPEN:
            section = COMMAND
            continue
        if line == TAIL.rstrip(b"\n"):
            break
        entry, start = (line[1:], offset + 1) if line.startswith(b",") else (line, offset)
        try:
            seq = _seq_decoder.decode(entry).seq
        except DECODE_ERRORS as error:
            raise RecordError(
                ErrorCode.INTERNAL, f"{record.name} is damaged at byte {offset}: {error}"
            ) from None
        steps.append(_Step(seq, section, start, len(entry)))
    write_step_index(record, steps)


@dataclass(frozen=True, slots=True)
class StepRef:
    seq: int
    kind: int
    offset: int
    length: int


class StepIndex:
    """The step index of one record, mapped read-only. Use as a context manager."""

    def __init__(self, record: Path) -> None:
        self.record = record
        path = step_index_path(record)
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        try:
            size = os.fstat(fd).st_size
            if size < _HEADER.size:
                raise RecordError(ErrorCode.INTERNAL, f"{path.name} is too short")
            self._map = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        header: tuple[bytes, int, int, int] = _HEADER.unpack_from(self._map)
        magic, self.record_size, self.record_mtime_ns, self.count = header
        if magic != _MAGIC or size != _HEADER.size + self.count * _ENTRY.size:
            self._map.close()
            raise RecordError(ErrorCode.INTERNAL, f"{path.name} is damaged")

    def __enter__(self) -> StepIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._map.close()

    def matches(self) -> bool:
        """Whether it was built for the record as it is now."""
        info = os.stat(self.record, follow_symlinks=False)
        return (info.st_size, info.st_mtime_ns) == (self.record_size, self.record_mtime_ns)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> StepRef:  # a list of steps, as Sequence
        if not 0 <= index < self.count:
            raise IndexError(index)
        seq, offset, length, kind = _ENTRY.unpack_from(
            self._map, _HEADER.size + index * _ENTRY.size
        )
        return StepRef(seq, kind, offset, length)

    def seq_at(self, index: int) -> int:
        seq: int = _ENTRY.unpack_from(self._map, _HEADER.size + index * _ENTRY.size)[0]
        return seq

    def after(self, after_seq: int, limit: int) -> list[StepRef]:
        """Up to `limit` steps with seq > after_seq, in order."""
        keys = _SeqKeys(self)
        start = bisect.bisect_right(keys, after_seq)
        return [self[index] for index in range(start, min(start + limit, self.count))]

    @property
    def last_seq(self) -> int:
        return self.seq_at(self.count - 1) if self.count else 0


class _SeqKeys(Sequence[int]):
    def __init__(self, index: StepIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, position: int) -> int:  # type: ignore[override]
        return self._index.seq_at(position)


def read_steps(record: Path, refs: Sequence[StepRef]) -> list[CommandRecord | TimelineEntry]:
    """The entries at `refs` (from the record's step index). Raises RecordError."""
    if not refs:
        return []
    fd = _open_record(record)
    try:
        entries: list[CommandRecord | TimelineEntry] = []
        for ref in refs:
            line = os.pread(fd, ref.length, ref.offset)
            try:
                entry = decode_step(ref.kind, line)
            except DECODE_ERRORS as error:
                raise RecordError(
                    ErrorCode.INTERNAL, f"{record.name}: step {ref.seq} is damaged: {error}"
                ) from None
            if entry.seq != ref.seq:
                raise RecordError(
                    ErrorCode.INTERNAL, f"{record.name}: its step index is out of date"
                )
            entries.append(entry)
        return entries
    finally:
        os.close(fd)
