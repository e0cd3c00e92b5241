"""`blender-session`: the command-line client of blender-sessiond.

Readable tables for people, `--json` for scripts; exit status 0 on success, 1 with a
one-line reason when the daemon refuses, 3 when no daemon can be reached.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from ..config import ENV_PREFIX, default_data_dir
from .client import ClientError, ControlClient, find_endpoint

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 3


def _parse_value(text: str) -> Any:
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
            raise ClientError(f"--params is not valid JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise ClientError("--params must be a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClientError(f"expected key=value, got {pair!r}")
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
    # --json is also accepted after the command (`blender-session list --json`).
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON instead of tables",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser = sub.add_parser

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return add_parser(name, parents=[json_flag], **kwargs)

    sub.add_parser = add_command  # type: ignore[method-assign]

    sub.add_parser("status", help="the daemon, its Blender link and open sessions")
    p = sub.add_parser("open", help="open a session")
    p.add_argument("--name", help="a human name for the session (unique)")
    p.add_argument("--session-id", help="choose the id yourself (makes open idempotent)")
    p.add_argument(
        "--blender",
        help="which Blender (port or host:port) when the daemon tracks several; default: the first",
    )
    p = sub.add_parser("cmd", help="send a scene command, e.g. cmd create_object kind=cube")
    p.add_argument("type", help="command type (get_scene_info, create_object, ...)")
    p.add_argument(
        "pairs",
        nargs="*",
        metavar="key=value",
        help="params; values are JSON where they parse: location=[1,2,3]",
    )
    p.add_argument("--params", help="params as one JSON object")
    p.add_argument("-s", "--session", help="session id or name (default: the only open one)")
    for name, text in (
        ("state", "a fresh get_state snapshot of a session's scene"),
        ("close", "close a session: final snapshot, save, print where"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("session", nargs="?", help="session id or name (default: the only open one)")
    sub.add_parser("list", help="open and saved sessions")
    p = sub.add_parser("show", help="one session's record")
    p.add_argument("session", help="session id or name")
    p = sub.add_parser("delete", help="delete a closed session's files")
    p.add_argument("session", help="session id or name")
    p = sub.add_parser("restore", help="bring a closed session's scene back into Blender")
    p.add_argument("session", help="session id or name")
    p.add_argument("--name", help="name for the new session")
    p.add_argument("--blender", help="which Blender to restore into (port or host:port)")
    p.add_argument(
        "--path",
        choices=["auto", "blend", "state", "replay"],
        default="auto",
        help="restore from the .blend snapshot, the state snapshot, or by replaying "
        "the recorded commands (default: auto, the best available)",
    )
    p = sub.add_parser("thumbnail", help="a PNG of a session's scene (rendered now if open)")
    p.add_argument("session", nargs="?", help="session id or name (default: the only open one)")
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the PNG")
    p = sub.add_parser("set-data", help="attach a JSON value to a session (null removes it)")
    p.add_argument("key")
    p.add_argument("value", help="JSON; a bare word is taken as a string")
    p.add_argument("-s", "--session", help="session id or name (default: the only open one)")
    p = sub.add_parser("cleanup", help="delete closed sessions by age and/or keep the newest N")
    p.add_argument("--older-than-days", type=float, help="closed more than this many days ago")
    p.add_argument("--keep", type=int, help="always keep the newest N closed sessions")
    p.add_argument("--dry-run", action="store_true", help="list what would go; delete nothing")
    p = sub.add_parser("export", help="write closed sessions to one .tar.gz archive")
    p.add_argument("sessions", nargs="*", help="ids or names (or --all)")
    p.add_argument("--all", action="store_true", help="every closed session")
    p.add_argument("-o", "--output", type=Path, required=True, help="the archive to write")
    p = sub.add_parser("import", help="bring sessions in from an archive made by export")
    p.add_argument("archive", type=Path)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a session whose id exists (default: keep both, new id)",
    )
    sub.add_parser("stats", help="storage statistics")
    sub.add_parser("watch", help="stream session, command and heartbeat events (Ctrl-C stops)")

    sub.add_parser("mcp", help="serve MCP on stdio (for AI agents); see the README's snippet")
    p = sub.add_parser("blender", help="start a Blender with the addon serving")
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
    p = sub.add_parser("addon-zip", help="build the installable addon zip")
    p.add_argument("-o", "--output", type=Path, default=Path("blender_scene_sessions.zip"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(_run(args))
    except ClientError as error:
        code = f"{error.code}: " if error.code else ""
        print(f"blender-session: {code}{error.message}", file=sys.stderr)
        sys.exit(EXIT_REFUSED if error.code else EXIT_NO_DAEMON)
    except KeyboardInterrupt:
        sys.exit(130)


def _run(args: argparse.Namespace) -> int:
    if args.command == "blender":
        return _blender(args)
    if args.command == "addon-zip":
        from .addon_zip import build_addon_zip

        members = build_addon_zip(args.output)
        print(
            f"wrote {args.output} ({len(members)} files); install it in Blender: "
            "Edit > Preferences > Add-ons (or Get Extensions) > Install from Disk"
        )
        return 0
    data_dir = (args.data_dir or default_data_dir()).expanduser()
    if args.command == "mcp":
        from .mcp_server import run as run_mcp

        run_mcp(data_dir, args.control_port)
        return 0
    host, port, token = find_endpoint(data_dir, args.control_port)
    with ControlClient(host, port, token) as client:
        return _client_command(client, args)


def _client_command(client: ControlClient, args: argparse.Namespace) -> int:
    command = args.command
    if command == "watch":
        for item in client.stream("watch"):
            data = msgspec.json.decode(item.data) if item.event else None
            if args.json:
                print(json.dumps({"event": item.event, "data": data}), flush=True)
            else:
                print(f"{datetime.now():%H:%M:%S} {item.event:<15} {_short(data)}", flush=True)
        return 0
    session = getattr(args, "session", None)
    if command in ("cmd", "state", "close", "set-data", "thumbnail") and not session:
        session = _only_open_session(client)
    op, params = {
        "status": ("status", {}),
        "open": (
            "session.open",
            {
                "name": args.__dict__.get("name"),
                "session_id": args.__dict__.get("session_id"),
                "blender": args.__dict__.get("blender"),
            },
        ),
        "list": ("session.list", {}),
        "stats": ("session.stats", {}),
        "state": ("session.state", {"session_id": session}),
        "close": ("session.close", {"session_id": session}),
        "show": ("session.show", {"session_id": session}),
        "delete": ("session.delete", {"session_id": session}),
        "restore": (
            "session.restore",
            {
                "session_id": session,
                "name": args.__dict__.get("name"),
                "path": args.__dict__.get("path"),
                "blender": args.__dict__.get("blender"),
            },
        ),
        "thumbnail": ("session.thumbnail", {"session_id": session}),
        "export": (
            "session.export",
            {
                "session_ids": args.__dict__.get("sessions"),
                "all": args.__dict__.get("all"),
                "path": str(args.output.resolve()) if command == "export" else None,
            },
        ),
        "import": (
            "session.import",
            {
                "path": str(args.archive.resolve()) if command == "import" else None,
                "overwrite": args.__dict__.get("overwrite"),
            },
        ),
        "cleanup": (
            "session.cleanup",
            {
                "older_than_days": args.__dict__.get("older_than_days"),
                "keep": args.__dict__.get("keep"),
                "dry_run": args.__dict__.get("dry_run"),
            },
        ),
    }.get(command, (None, None))
    if command == "set-data":
        value = _parse_value(args.value)
        op, params = "session.set_data", {"session_id": session, "key": args.key, "value": value}
    if command == "cmd":
        op, params = (
            "session.command",
            {
                "session_id": session,
                "type": args.type,
                "params": command_params(args.pairs, args.params),
            },
        )
    assert op is not None and params is not None
    sent = {k: v for k, v in params.items() if v is not None or k == "value"}
    result = msgspec.json.decode(client.call(op, sent))
    if command == "thumbnail":
        png = base64.b64decode(result.pop("png_base64"))
        args.output.write_bytes(png)
        result["path"] = str(args.output)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_render(command, result))
    return 0


def _only_open_session(client: ControlClient) -> str:
    status = msgspec.json.decode(client.call("status"))
    open_sessions = status["open_sessions"]
    if len(open_sessions) == 1:
        return str(open_sessions[0]["session_id"])
    if not open_sessions:
        raise ClientError("no session is open (run: blender-session open)", "not_found")
    ids = ", ".join(s["session_id"] for s in open_sessions)
    raise ClientError(
        f"several sessions are open ({ids}); name one with -s/--session or as an argument",
        "invalid_params",
    )


def _blender(args: argparse.Namespace) -> int:
    from .launcher import blender_command, run

    try:
        command = blender_command(
            port=args.port,
            blender=args.blender,
            gui=args.gui,
            allow_execute_code=args.allow_execute_code,
            factory_scene=args.factory_scene,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"blender-session: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"starting Blender for the addon on 127.0.0.1:{args.port}: {' '.join(command)}", flush=True
    )
    return run(command)


# --- rendering for people ------------------------------------------------------------


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _size(size: int) -> str:
    return f"{size / 1024:.1f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _short(data: Any, limit: int = 110) -> str:
    text = json.dumps(data, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render(command: str, result: Any) -> str:
    if command == "status":
        blender = result["blender"]
        heartbeat = blender["last_heartbeat"]
        ago = f"{time.time() - heartbeat:.1f} s ago" if heartbeat else "never"
        lines = [
            f"daemon     {result['daemon_version']} pid {result['pid']}, "
            f"control {result['control']}",
            f"data dir   {result['data_dir']}",
            *(
                [f"proxy      {result['proxy']} (for clients of the addon)"]
                if result["proxy"]
                else []
            ),
            f"blender    {blender['endpoint']}: {blender['status']}"
            + (
                f" (Blender {blender['blender_version']}, heartbeat {ago})"
                if blender["blender_version"]
                else ""
            )
            + (
                f" - {blender['last_error']}"
                if blender["last_error"] and not blender["connected"]
                else ""
            ),
            f"sessions   {len(result['open_sessions'])} open",
        ]
        return "\n".join(
            lines
            + [
                f"  {s['session_id']}  {s['name'] or ''}  {s['command_count']} commands"
                for s in result["open_sessions"]
            ]
        )
    if command == "list":
        rows = [
            [
                s["session_id"],
                s["name"] or "",
                s["status"],
                _when(s["created_at"]),
                _when(s["closed_at"]),
                str(s["command_count"]),
                _size(s["size_bytes"]),
            ]
            for s in result["sessions"]
        ]
        text = _table(["SESSION", "NAME", "STATUS", "CREATED", "CLOSED", "COMMANDS", "SIZE"], rows)
        for damaged in result["damaged"]:
            text += f"\ndamaged: {damaged['file']}: {damaged['reason']}"
        return text if rows or result["damaged"] else "no sessions yet (run: blender-session open)"
    if command == "open":
        state = "opened" if result["created"] else "already open:"
        return f"{state} {result['session_id']}" + (
            ""
            if result["blender"]["connected"]
            else f"\nnote: no Blender connected at {result['blender']['endpoint']} yet"
        )
    if command == "cmd":
        return (
            f"#{result['seq']} {result['type']} {result['status']} "
            f"({result['duration_ms']:.1f} ms)\n{json.dumps(result['result'], indent=2)}"
        )
    if command == "close":
        return (
            f"closed {result['session_id']} ({result['command_count']} commands)\n"
            f"saved to {result['path']}"
        )
    if command == "restore":
        skipped = "".join(f"\n  skipped {s['name']}: {s['reason']}" for s in result["skipped"])
        skipped += "".join(f"\n  note: {note}" for note in result["notes"])
        return (
            f"restored {result['restored_from']} into new session {result['session_id']} "
            f"via {result['path']}: {len(result['created'])} created, "
            f"{len(result['updated'])} updated, {len(result['removed'])} removed{skipped}"
        )
    if command == "show":
        data = result["data"]
        rows = [
            [
                str(c["seq"]),
                c["type"],
                c["status"],
                f"{c['duration_ms'] or 0:.1f}",
                _short(c["params"], 60),
            ]
            for c in data["commands"]
        ]
        head = [
            f"session    {data['session_id']}  {data['name'] or ''}",
            f"created    {_when(data['created_at'])}   closed {_when(data['closed_at'])}",
            f"blender    {data['blender']['version'] or '?'} at "
            f"{data['blender']['host']}:{data['blender']['port']}",
            f"objects    {', '.join(data['state']['objects']) or '-'}",
            f"commands   {data['command_count']}",
        ]
        if data["restored_from"]:
            head.append(f"restored   from {data['restored_from']}")
        snapshot = data["snapshot"] or {}
        if snapshot.get("blend") or snapshot.get("thumbnail"):
            head.append(
                f"snapshot   .blend: {snapshot.get('blend') or '-'} (Blender "
                f"{snapshot.get('blender_version') or '?'}), thumbnail: "
                f"{snapshot.get('thumbnail') or '-'}"
            )
        return "\n".join(head) + "\n" + _table(["SEQ", "TYPE", "STATUS", "MS", "PARAMS"], rows)
    if command == "export":
        return (
            f"wrote {result['path']}: {len(result['session_ids'])} sessions, "
            f"{_size(result['bytes'])}"
        )
    if command == "import":
        lines = [
            f"imported {item['from_id']}"
            + (f" as {item['to_id']}" if item["to_id"] != item["from_id"] else "")
            for item in result["imported"]
        ]
        lines += [f"overwrote {session_id}" for session_id in result["overwritten"]]
        return "\n".join(lines) or "nothing imported"
    if command == "cleanup":
        verb = "would delete" if result["dry_run"] else "deleted"
        listing = "".join(f"\n  {session_id}" for session_id in result["deleted"])
        return (
            f"{verb} {len(result['deleted'])} sessions ({_size(result['freed_bytes'])}), "
            f"{result['remaining']} closed sessions left{listing}"
        )
    if command == "thumbnail":
        return f"wrote {result['path']} ({result['bytes']} bytes)"
    if command == "delete":
        return f"deleted {result['session_id']} ({', '.join(result['removed'])})"
    if command == "state":
        scene = result["scene"]
        return (
            f"scene {scene['scene']!r} frame {scene['frame']}: "
            f"{len(scene['objects'])} objects\n"
            + _table(
                ["NAME", "TYPE", "LOCATION", "KIND"],
                [
                    [o["name"], o["type"], _short(o["location"], 40), o["data_kind"] or "-"]
                    for o in scene["objects"]
                ],
            )
        )
    return json.dumps(result, indent=2)
