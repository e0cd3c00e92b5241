"""`blender-session`: the command-line client of blender-sessiond.

Readable tables for people, `--json` for scripts; exit status 0 on success, 1 with a
one-line reason when the daemon refuses, 2 for a usage error, 3 when no daemon can be
reached. With `--json`, an error is one JSON object on stdout:
`{"error": {"code", "message"}}` (`code`: the daemon's error code, or `usage`,
`no_daemon`).

Long (about 460 lines) because it is the one place where every subcommand's arguments
are declared and turned into an op's params; their output is in render.py, the
time-travel commands in travel.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argcomplete
import msgspec
from argcomplete.shell_integration import shellcode

from .. import __version__
from ..config import ENV_PREFIX, default_data_dir
from ..protocol.commands import COMMANDS
from ..protocol.ops import (
    AdoptResult,
    CleanupResult,
    CloseResult,
    CommandResult,
    DeleteResult,
    ExportResult,
    ImportResult,
    OpenResult,
    RestoreResult,
    SetDataResult,
    StateResult,
    StatsResult,
    StatusResult,
    ThumbnailResult,
    WebLinkResult,
)
from . import batch, pages, progress, render, schema_help, travel, watching
from .client import Caller, ClientError, ControlClient, UsageError, find_endpoint
from .offline import OFFLINE_COMMANDS, OfflineClient, has_sessions

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 3


def _parse_value(text: str) -> object:
    """`key=value` values: JSON where it parses (numbers, lists, true), else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def command_params(pairs: list[str], params_json: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except ValueError as error:
            raise UsageError(f"--params is not valid JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise UsageError("--params must be a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {pair!r}")
        params[key] = _parse_value(value)
    return params


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blender-session",
        description="Drive Blender through blender-sessiond: open a session, send commands, "
        "close it to save, restore it later. The daemon's port and token are read from its "
        "data dir.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"the daemon's data dir [{ENV_PREFIX}DATA_DIR] "
        "(default: the platform's user data dir)",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=None,
        help="talk to this control port instead of the one the daemon wrote",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # --json is also accepted after the command (`blender-session list --json`).
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON instead of tables",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        """A subcommand that also takes --json after its name."""
        return sub.add_parser(name, parents=[json_flag], help=help)

    command("status", help="the daemon, its Blender link and open sessions")
    p = command("open", help="open a session")
    p.add_argument("--name", help="a human name for the session (unique)")
    p.add_argument("--session-id", help="choose the id yourself (makes open idempotent)")
    p.add_argument(
        "--blender",
        help="which Blender (port or host:port) when the daemon tracks several; default: the first",
    )
    p = sub.add_parser(
        "cmd", parents=[json_flag], help="send a scene command, e.g. cmd create_object kind=cube",
        epilog=schema_help.commands_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    kind = p.add_argument(
        "type", nargs="?", help="command type (get_scene_info, create_object, ...)"
    )
    kind.completer = lambda **_: sorted(COMMANDS)  # type: ignore[attr-defined]  # argcomplete's
    p.add_argument(
        "pairs",
        nargs="*",
        metavar="key=value",
        help="params; values are JSON where they parse: location=[1,2,3]",
    )
    p.add_argument("--params", help="params as one JSON object")
    p.add_argument(
        "--file", metavar="FILE",
        help='many commands, one JSON object per line ({"type": ..., "params": {...}}; '
        "- for stdin), pipelined, each recorded; exit 1 if any failed",
    )  # fmt: skip
    p.add_argument(
        "--stop-on-error", action="store_true",
        help="with --file: send nothing after the first command that fails",
    )  # fmt: skip
    p.add_argument("-s", "--session", help="session id or name (default: the only open one)")
    for name, text in (
        ("state", "a fresh get_state snapshot of a session's scene"),
        ("close", "close a session: final snapshot, save, print where"),
    ):
        p = command(name, help=text)
        p.add_argument("session", nargs="?", help="session id or name (default: the only open one)")
    p = command("list", help="open and saved sessions, newest first")
    p.add_argument("--limit", type=int, default=100, help="sessions per page (default 100)")
    p.add_argument("--all", action="store_true", help="every page, not only the first")
    p.add_argument("--name", help="only sessions whose name contains this")
    p.add_argument(
        "--text", metavar="TEXT",
        help="only sessions whose name, objects' names or free-form data contain this "
        "(one page; with a shared store, the database searches the others' saved sessions)",
    )  # fmt: skip
    p.add_argument("--status", choices=["all", "open", "closed"], default="all")
    p.add_argument("--cursor", help="start after this point (printed under a page)")
    p = command("show", help="one session's record (its history read page by page)")
    p.add_argument("session", help="session id or name")
    p.add_argument(
        "--type", action="append", metavar="TYPE",
        help="only steps of this type (a command's, or edit, rewind); repeatable",
    )  # fmt: skip
    p.add_argument("--errors", action="store_true", help="only steps that did not succeed")
    p.add_argument("--last", type=int, metavar="N", help="only the last N steps")
    p = command("delete", help="delete a closed session's files")
    p.add_argument("session", help="session id or name")
    p = command("restore", help="bring a closed session's scene back into Blender")
    p.add_argument("session", help="session id or name")
    p.add_argument("--name", help="name for the new session")
    p.add_argument("--blender", help="which Blender to restore into (port or host:port)")
    p.add_argument(
        "--path",
        choices=["auto", "blend", "state", "replay", "checkpoint"],
        default="auto",
        help="restore from the .blend snapshot, the state snapshot, by replaying "
        "the recorded commands, or from its checkpoints (default: auto, the best available)",
    )
    p.add_argument(
        "--at", dest="at_seq", type=int, metavar="N",
        help="the scene right after step N (from the nearest checkpoint before it)",
    )  # fmt: skip
    p.add_argument(
        "--dry-run", action="store_true",
        help="only say which path it would take and why; nothing is opened",
    )  # fmt: skip
    p = command(
        "adopt",
        help="take over an open session whose daemon died (--store postgresql://... only): "
        "its scene brought back into this daemon's Blender, recorded on from there",
    )
    p.add_argument("session", help="session id")
    p.add_argument("--blender", help="which Blender to bring it into (port or host:port)")
    travel.add_commands(command)
    p = command("thumbnail", help="a PNG of a session's scene (rendered now if open)")
    p.add_argument("session", nargs="?", help="session id or name (default: the only open one)")
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the PNG")
    p = command("set-data", help="attach a JSON value to a session (null removes it)")
    p.add_argument("key")
    p.add_argument("value", help="JSON; a bare word is taken as a string")
    p.add_argument("-s", "--session", help="session id or name (default: the only open one)")
    p = command("cleanup", help="delete closed sessions by age and/or keep the newest N")
    p.add_argument("--older-than-days", type=float, help="closed more than this many days ago")
    p.add_argument("--keep", type=int, help="always keep the newest N closed sessions")
    p.add_argument("--dry-run", action="store_true", help="list what would go; delete nothing")
    p.add_argument(
        "--yes", dest="delete_all", action="store_true",
        help="go ahead when the rules would delete every closed session",
    )  # fmt: skip
    p = command("export", help="write closed sessions to one .tar.gz archive")
    p.add_argument("sessions", nargs="*", help="ids or names (or --all)")
    p.add_argument("--all", action="store_true", help="every closed session")
    p.add_argument("-o", "--output", type=Path, required=True, help="the archive to write")
    p = command("import", help="bring sessions in from an archive made by export")
    p.add_argument("archive", type=Path)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a session whose id exists (default: keep both, new id)",
    )
    command("stats", help="storage statistics")
    command("watch", help="stream session, command and heartbeat events (Ctrl-C stops)")
    p = command("web", help="open the web timeline in a browser (a new one-time login link)")
    p.add_argument("--no-open", action="store_true", help="only print the link")

    command("mcp", help="serve MCP on stdio (for AI agents); see the README's snippet")
    p = command("blender", help="start a Blender with the addon serving")
    p.add_argument("--port", type=int, default=9876, help="addon port (default: 9876)")
    p.add_argument("--blender", metavar="PATH", help="a Blender binary (default: the bpy module)")
    p.add_argument("--gui", action="store_true", help="with its window (needs --blender)")
    p.add_argument(
        "--allow-execute-code",
        action="store_true",
        help="let clients run arbitrary Python in it (off by default)",
    )
    p.add_argument(
        "--factory-scene",
        action="store_true",
        help="start with an empty scene instead of the default cube, light, camera",
    )
    p = command(
        "migrate",
        help="move saved sessions between this data dir and PostgreSQL, checked by SHA-256",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", metavar="URL", help="into the database: postgresql://user@host/db")
    where.add_argument(
        "--from", dest="source", metavar="URL", help="from the database into --data-dir"
    )
    p = command(
        "completion",
        help='print shell completion for both programs: eval "$(blender-session completion bash)"',
    )
    p.add_argument("shell", choices=["bash", "zsh"])
    p = command("addon-zip", help="build the installable addon zip")
    p.add_argument("-o", "--output", type=Path, default=Path("blender_scene_sessions.zip"))
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    argcomplete.autocomplete(parser)  # answers the shell's TAB, then exits; else nothing
    args = parser.parse_args(argv)
    try:
        sys.exit(_run(args))
    except ClientError as error:
        if isinstance(error, UsageError):
            status, code = EXIT_USAGE, "usage"
        elif error.code:
            status, code = EXIT_REFUSED, error.code
        else:
            status, code = EXIT_NO_DAEMON, "no_daemon"
        if getattr(args, "json", False):  # one JSON object on stdout, for scripts
            print(json.dumps({"error": {"code": code, "message": error.message}}))
        else:
            shown = f"{error.code}: " if error.code and status == EXIT_REFUSED else ""
            print(f"blender-session: {shown}{error.message}", file=sys.stderr)
        sys.exit(status)
    except KeyboardInterrupt:
        sys.exit(130)


def _run(args: argparse.Namespace) -> int:
    if args.command == "blender":
        from .launcher import main as run_blender

        return run_blender(args)
    if args.command == "completion":
        print(shellcode(["blender-session", "blender-sessiond"], shell=args.shell))
        return 0
    if args.command == "addon-zip":
        from .addon_zip import build_addon_zip

        members = build_addon_zip(args.output)
        print(
            f"wrote {args.output} ({len(members)} files); install it in Blender: "
            "Edit > Preferences > Add-ons (or Get Extensions) > Install from Disk"
        )
        return 0
    data_dir = (args.data_dir or default_data_dir()).expanduser()
    if args.command == "migrate":
        from .migration import run as run_migration

        return run_migration(data_dir, args.to, args.source, args.json)
    if args.command == "mcp":
        from .mcp_server import run as run_mcp

        run_mcp(data_dir, args.control_port)
        return 0
    batch_commands = batch.checked_cmd(args, command_params) if args.command == "cmd" else None
    try:
        host, port, token = find_endpoint(data_dir, args.control_port)
        client = ControlClient(host, port, token)
    except ClientError as error:
        if error.code or args.command not in OFFLINE_COMMANDS or not has_sessions(data_dir):
            raise
        # No daemon answers: read the saved sessions from the data dir itself.
        if not args.json:
            print(f"blender-session: no daemon answers; read from {data_dir}", file=sys.stderr)
        with OfflineClient(data_dir) as offline:
            return _client_command(offline, args)
    with client:
        if batch_commands is not None:
            session = args.session or _only_open_session(client)
            return batch.run(client, session, batch_commands, args.stop_on_error, args.json)
        return _client_command(client, args)


@dataclass(frozen=True)
class _Op:
    """A CLI command that is one control op: its name, the Struct of its result, and
    how a person sees that result."""

    op: str
    result: type[msgspec.Struct]
    render: Callable[[Any], str]
    needs_session: bool = False  # defaults to the only open session when not named


_OPS: dict[str, _Op] = {
    "status": _Op("status", StatusResult, render.status),
    "open": _Op("session.open", OpenResult, render.opened),
    "stats": _Op("session.stats", StatsResult, render.stats),
    "state": _Op("session.state", StateResult, render.state, needs_session=True),
    "close": _Op("session.close", CloseResult, render.closed, needs_session=True),
    "delete": _Op("session.delete", DeleteResult, render.deleted),
    "restore": _Op("session.restore", RestoreResult, render.restored),
    "adopt": _Op("session.adopt", AdoptResult, render.adopted),
    "thumbnail": _Op("session.thumbnail", ThumbnailResult, str, needs_session=True),
    "export": _Op("session.export", ExportResult, render.exported),
    "import": _Op("session.import", ImportResult, render.imported),
    "cleanup": _Op("session.cleanup", CleanupResult, render.cleaned),
    "set-data": _Op("session.set_data", SetDataResult, render.data_set, needs_session=True),
    "cmd": _Op("session.command", CommandResult, render.command, needs_session=True),
}


def _params(command: str, args: argparse.Namespace, session: str | None) -> dict[str, Any]:
    """The op's params from the command line (None values are left out)."""
    given = args.__dict__
    match command:
        case "open":
            params = {k: given.get(k) for k in ("name", "session_id", "blender")}
        case "restore":
            params = {
                "session_id": session,
                **{k: given.get(k) for k in ("name", "path", "blender", "at_seq", "dry_run")},
            }
        case "adopt":
            params = {"session_id": session, "blender": given.get("blender")}
        case "export":
            params = {
                "session_ids": given.get("sessions"),
                "all": given.get("all"),
                "path": str(args.output.resolve()),
            }
        case "import":
            params = {"path": str(args.archive.resolve()), "overwrite": given.get("overwrite")}
        case "cleanup":
            params = {k: given.get(k) for k in ("older_than_days", "keep", "dry_run", "delete_all")}
        case "set-data":
            return {"session_id": session, "key": args.key, "value": _parse_value(args.value)}
        case "cmd":
            params = {
                "session_id": session,
                "type": args.type,
                "params": command_params(args.pairs, args.params),
            }
        case "status" | "list" | "stats":
            params = {}
        case _:
            params = {"session_id": session}
    return {key: value for key, value in params.items() if value is not None}


def _client_command(client: Caller, args: argparse.Namespace) -> int:
    command = args.command
    if command == "watch":
        if not isinstance(client, ControlClient):
            raise ClientError("watch needs the daemon (start it: blender-sessiond)")
        return watching.watch(client.stream("watch"), args.json)
    if command == "web":
        url = msgspec.json.decode(client.call("web.link"), type=WebLinkResult).url
        print(json.dumps({"url": url}) if args.json else url)
        if not args.no_open and not args.json:
            webbrowser.open(url)
        return 0
    if command == "show":
        keep = render.StepFilter(frozenset(args.type or ()), args.errors)
        return pages.show(client, args.session, args.json, keep, args.last)
    if command == "list":
        params = {"limit": args.limit, "name": args.name, "status": args.status,
                  "text": args.text}  # fmt: skip
        if args.cursor:
            params["cursor"] = args.cursor
        return pages.session_list(
            client, {k: v for k, v in params.items() if v is not None}, args.all, args.json
        )
    if command in travel.COMMANDS:
        return travel.run(client, args, args.session or _only_open_session(client))
    spec = _OPS[command]
    session = getattr(args, "session", None)
    if spec.needs_session and not session:
        session = _only_open_session(client)
    with progress.working(command, session or getattr(args, "session", None), args.json):
        raw = client.call(spec.op, _params(command, args, session))
    result = msgspec.json.decode(raw, type=spec.result)
    if isinstance(result, ThumbnailResult):
        args.output.write_bytes(base64.b64decode(result.png_base64))
        shown: dict[str, Any] = {"session_id": result.session_id, "bytes": result.bytes,
                                 "path": str(args.output)}  # fmt: skip
        print(
            json.dumps(shown, indent=2)
            if args.json
            else f"wrote {args.output} ({result.bytes} bytes)"
        )
        return 0
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(result), indent=2).decode())
    else:
        print(spec.render(result))
    return 0


def _only_open_session(client: Caller) -> str:
    open_sessions = msgspec.json.decode(client.call("status"), type=StatusResult).open_sessions
    if len(open_sessions) == 1:
        return open_sessions[0].session_id
    if not open_sessions:
        raise ClientError("no session is open (run: blender-session open)", "not_found")
    ids = ", ".join(s.session_id for s in open_sessions)
    raise ClientError(
        f"several sessions are open ({ids}); name one with -s/--session or as an argument",
        "invalid_params",
    )
