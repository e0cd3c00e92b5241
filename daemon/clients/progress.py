"""What a person sees while the daemon works on something long (close, restore,
import, export, cleanup): a spinner with what is happening and the time so far, on
standard error, only on a terminal and never with --json. The daemon answers these
ops once, at the end, so the spinner shows time, not a fraction."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console

# The CLI commands that may take long, and what a person is told meanwhile.
LONG_WORK = {
    "close": "closing {session}: a last checkpoint, the .blend and the thumbnail",
    "restore": "restoring {session} into Blender",
    "import": "importing the archive",
    "export": "exporting sessions",
    "cleanup": "cleaning up closed sessions",
}


@contextlib.contextmanager
def working(command: str, session: str | None, as_json: bool) -> Iterator[None]:
    text = LONG_WORK.get(command)
    if text is None or as_json or not sys.stderr.isatty():
        yield
        return
    console = Console(stderr=True)
    with console.status(text.format(session=session or "the session") + "..."):
        yield
