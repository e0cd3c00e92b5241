"""`blender-session cmd --file FILE`: many scene commands from JSON lines (`-`: stdin),
sent through the `session.batch` op a chunk at a time (each command still recorded
with its own seq), with a progress bar on a terminal and a summary at the end.
Exit status 1 when any command failed."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..protocol.ops import BatchItem, BatchResult
from .client import ControlClient, UsageError

CHUNK = 500  # commands per request: a round trip per 500, replies of ~100 KB


def checked_cmd(
    args: argparse.Namespace, command_params: Callable[[list[str], str | None], object]
) -> list[dict[str, Any]] | None:
    """`cmd`'s usage errors, said before any daemon is asked; the commands of --file
    (None: one command from the command line)."""
    if args.file is None:
        if args.type is None:
            raise UsageError("cmd needs a command type (or --file FILE)")
        if args.stop_on_error:
            raise UsageError("--stop-on-error goes with --file")
        command_params(args.pairs, args.params)
        return None
    if args.type is not None or args.pairs or args.params:
        raise UsageError("cmd --file takes its commands from the file, not the command line")
    return load(args.file)


def read_commands(source: IO[str], name: str) -> list[dict[str, Any]]:
    """Every command of the file, checked before anything is sent: a JSON object per
    line with `type` (a string) and optionally `params` (an object); blank lines and
    lines starting with `#` are skipped."""
    commands: list[dict[str, Any]] = []
    for number, line in enumerate(source, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            command = json.loads(text)
        except ValueError as error:
            raise UsageError(f"{name}:{number}: not JSON: {error}") from None
        if not isinstance(command, dict) or not isinstance(command.get("type"), str):
            raise UsageError(f'{name}:{number}: expected {{"type": ..., "params": {{...}}}}')
        unknown = sorted(set(command) - {"type", "params"})
        if unknown:
            raise UsageError(f"{name}:{number}: unknown keys {unknown}; use type and params")
        if not isinstance(command.get("params", {}), dict):
            raise UsageError(f"{name}:{number}: params must be an object")
        commands.append(command)
    return commands


def open_source(path: str) -> tuple[IO[str], str]:
    if path == "-":
        return sys.stdin, "stdin"
    try:
        return Path(path).open(encoding="utf-8"), path
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None


def _shown(number: int, item: BatchItem) -> dict[str, Any]:
    return {
        "command": number,
        "status": item.status,
        "seq": item.seq,
        "result": json.loads(bytes(item.result)),
        "error": msgspec.to_builtins(item.error),
    }


def _chunks(commands: list[dict[str, Any]]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    for start in range(0, len(commands), CHUNK):
        yield start, commands[start : start + CHUNK]


def load(path: str) -> list[dict[str, Any]]:
    """The file's commands (usage errors before any daemon is asked)."""
    source, name = open_source(path)
    with source:
        return read_commands(source, name)


def run(
    client: ControlClient,
    session: str,
    commands: list[dict[str, Any]],
    stop_on_error: bool,
    as_json: bool,
    out: IO[str] = sys.stdout,
) -> int:
    succeeded = failed = skipped = 0
    failures: list[str] = []
    show_progress = not as_json and out.isatty() and sys.stderr.isatty()
    progress = Progress(
        TextColumn("[bold]cmd --file"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True, disable=not show_progress,
    )  # fmt: skip
    with progress:
        task = progress.add_task("commands", total=len(commands))
        for start, chunk in _chunks(commands):
            if stop_on_error and failed:
                skipped += len(chunk)
                continue
            params = {"session_id": session, "commands": chunk, "stop_on_error": stop_on_error}
            result = msgspec.json.decode(client.call("session.batch", params), type=BatchResult)
            succeeded, failed = succeeded + result.succeeded, failed + result.failed
            skipped += result.skipped
            for item in result.results:
                number = start + item.index + 1  # the file's n-th command
                if item.status == "error" and item.error is not None:
                    failures.append(
                        f"command {number} ({chunk[item.index]['type']}): "
                        f"{item.error.code}: {item.error.message}"
                    )
                if as_json:
                    out.write(json.dumps(_shown(number, item)) + "\n")
            progress.advance(task, len(chunk))
    if not as_json:
        out.write(
            f"{len(commands)} command(s): {succeeded} succeeded, {failed} failed, "
            f"{skipped} not sent\n"
        )
        for failure in failures[:20]:
            out.write(f"  {failure}\n")
        if len(failures) > 20:
            out.write(f"  ... and {len(failures) - 20} more\n")
    return 1 if failed else 0
