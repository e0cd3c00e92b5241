"""The daemon's settings: defaults, environment variables, command-line flags.

Each default is defined once: the constants below (or in protocol/limits.py) feed the
`DaemonConfig` dataclass, and the flags, their environment variables and `--help`
read the dataclass's defaults.

Long (about 470 lines) because every flag is declared here, with its help text, next
to its default and its check: one place to read what the daemon can be told.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import argcomplete
import platformdirs

from . import __version__, config_file
from .protocol.limits import (
    AUTH_DEADLINE_S,
    IMPORT_MAX_MEMBERS,
    IMPORT_MAX_RATIO,
    IMPORT_MAX_TOTAL_BYTES,
    MAX_CONNECTIONS,
    MAX_FRAME_BYTES,
    MAX_JSON_DEPTH,
    MAX_PROXY_CONNECTIONS,
    PRE_AUTH_FRAME_BYTES,
)

APP_NAME = "blender-scene-sessions"
ENV_PREFIX = "BLENDER_SESSIOND_"
DEFAULT_ADDON_HOST = "127.0.0.1"
DEFAULT_ADDON_PORT = 9876
DEFAULT_CONTROL_PORT = 9877
DEFAULT_WEB_PORT = 9879
DEFAULT_HEARTBEAT_INTERVAL_S = 1.0
DEFAULT_HEARTBEAT_TIMEOUT_S = 5.0
DEFAULT_REQUEST_TIMEOUT_S = 60.0
# Hosts that mean this machine: the only ones the control, proxy and web ports listen
# on, and the ones where Blender can write into the data dir (snapshots).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


STORE_SCHEMES = ("postgresql://", "postgres://")  # what --store takes (pgstore's URLs)


def default_data_dir() -> Path:
    env = os.environ.get(f"{ENV_PREFIX}DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME))


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    data_dir: Path
    addon_host: str = DEFAULT_ADDON_HOST
    addon_port: int = DEFAULT_ADDON_PORT
    extra_addon_ports: tuple[int, ...] = ()  # more Blenders to track at once
    control_host: str = "127.0.0.1"
    control_port: int = DEFAULT_CONTROL_PORT
    proxy_port: int | None = None  # off unless set; 0 picks a free port
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    journal_fsync: bool = False
    allow_execute_code: bool = False  # through the proxy (which has no token)
    web_port: int | None = None  # the web timeline: None off (the command line's default: on)
    store: str | None = None  # postgresql://...: saved sessions shared with other daemons
    store_backlog_kib: int = 64 * 1024  # the local journal ahead of an unreachable database
    store_lease_s: float = 30.0  # an open session's lease in the shared store
    max_in_flight_per_client: int = 128
    max_connections: int = MAX_CONNECTIONS
    max_proxy_connections: int = MAX_PROXY_CONNECTIONS
    import_max_bytes: int = IMPORT_MAX_TOTAL_BYTES
    import_max_members: int = IMPORT_MAX_MEMBERS
    import_max_ratio: int = IMPORT_MAX_RATIO
    blend_snapshots: bool = True
    thumbnails: bool = True
    on_blender_restart: str = "resume"  # or "mark"
    checkpoint_every_steps: int = 500  # 0: no periodic checkpoints
    checkpoint_budget_percent: float = 5.0
    checkpoint_max_count: int = 100
    checkpoint_max_mib: int = 2048
    idle_ttl_s: float | None = 30 * 60.0
    cleanup_older_than_days: float | None = 90.0
    cleanup_keep: int | None = None
    cleanup_interval_s: float | None = 6 * 3600.0
    log_format: str = "auto"
    log_level: str = "info"


DEFAULTS: dict[str, Any] = {
    field.name: field.default for field in fields(DaemonConfig) if field.name != "data_dir"
}


def _env(name: str) -> str | None:
    return os.environ.get(ENV_PREFIX + name)


def _flag_on(name: str) -> bool:
    return (_env(name) or "0").lower() in ("1", "true", "yes")


FIXED_LIMITS = (
    f"fixed limits (each with its reason in docs/limits.md): one message is at most "
    f"{MAX_FRAME_BYTES // 2**20} MiB; until a request shows the token, a control "
    f"connection's lines are at most {PRE_AUTH_FRAME_BYTES // 1024} KiB (unless the line "
    f"starts with the token) and it must show it within {AUTH_DEADLINE_S:g} s; JSON values "
    f"nest at most {MAX_JSON_DEPTH} levels, so that whatever is accepted can be read back."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blender-sessiond",
        description=(
            "Run the blender-scene-sessions daemon: it connects to the Blender addon, "
            "heartbeats it, records every command sent through it into a session, and "
            "saves each session to the data dir. Every flag can also be set with the "
            f"environment variable shown ({ENV_PREFIX}...)."
        ),
        epilog=FIXED_LIMITS,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help="the daemon's settings in TOML, keys named as these flags (proxy-port = 9878); "
        "flags and environment variables win over it (default: "
        "$XDG_CONFIG_HOME/blender-scene-sessions/config.toml, when it exists)",
    )  # fmt: skip

    def option(
        flag: str,
        env: str,
        convert: Callable[[str], object],
        default: object,
        text: str,
        shown: str | None = None,
    ) -> None:
        raw = _env(env)
        parser.add_argument(
            flag,
            type=convert,
            default=convert(raw) if raw else default,
            help=f"{text} [{ENV_PREFIX}{env}] (default: {shown if shown else default})",
        )

    option(
        "--data-dir",
        "DATA_DIR",
        Path,
        default_data_dir(),
        "where sessions and the control token live; it must be private to you",
        "the platform's user data dir, e.g. ~/.local/share/blender-scene-sessions",
    )
    option("--addon-host", "ADDON_HOST", str, DEFAULTS["addon_host"], "host of the Blender addon")
    parser.add_argument(
        "--addon-port", type=int, action="append", default=None,
        help="port of the Blender addon; repeat it to track several Blenders (the first is "
        f"the default for new sessions) [{ENV_PREFIX}ADDON_PORT, comma-separated] "
        f"(default: {DEFAULTS['addon_port']})",
    )  # fmt: skip
    option(
        "--control-port",
        "CONTROL_PORT",
        int,
        DEFAULTS["control_port"],
        "loopback port for clients; 0 picks a free one",
    )
    option(
        "--proxy-port",
        "PROXY_PORT",
        int,
        None,
        "also listen on this loopback port for clients written for the addon (blender-mcp's "
        "server: set its BLENDER_PORT to this); their commands are recorded in the session "
        "bound to this Blender; 0 picks a free port",
        "off",
    )
    option(
        "--heartbeat-interval",
        "HEARTBEAT_INTERVAL",
        float,
        DEFAULTS["heartbeat_interval_s"],
        "seconds between pings to Blender",
    )
    option(
        "--heartbeat-timeout",
        "HEARTBEAT_TIMEOUT",
        float,
        DEFAULTS["heartbeat_timeout_s"],
        "seconds without a pong before Blender counts as gone (its connection is kept: "
        "answers that come later are still recorded)",
    )
    option(
        "--request-timeout",
        "REQUEST_TIMEOUT",
        float,
        DEFAULTS["request_timeout_s"],
        "seconds to wait for Blender to answer a command (then its outcome is 'unknown' "
        "until an answer comes)",
    )
    option(
        "--store",
        "STORE",
        str,
        None,
        "share sessions with other daemons through PostgreSQL (postgresql://user@host/db): "
        "every command is answered once the database committed it, saved sessions are "
        "published there, others' are read from it, and a dead daemon's open sessions can "
        "be adopted (the data dir stays where this daemon works)",
        "only the data dir",
    )
    option(
        "--store-lease",
        "STORE_LEASE",
        float,
        DEFAULTS["store_lease_s"],
        "seconds a --store lease on an open session lasts; the daemon renews it every third "
        "of that, and another daemon may adopt the session once it has expired",
    )
    option(
        "--store-backlog-kib",
        "STORE_BACKLOG_KIB",
        int,
        DEFAULTS["store_backlog_kib"],
        "while the --store database is unreachable, commands are answered from the local "
        "journal until a session's journal is this far ahead of the database; then new "
        "commands of that session get 'storage' until it catches up",
    )
    option(
        "--web-port",
        "WEB_PORT",
        int,
        DEFAULT_WEB_PORT,
        "loopback port of the web timeline (a browser page of every session); 0 picks a "
        "free one; the one-time link to open it is printed and written to control.json",
    )
    parser.add_argument(
        "--no-web", action="store_true", default=_flag_on("NO_WEB"),
        help=f"do not serve the web timeline [{ENV_PREFIX}NO_WEB] (default: served)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-execute-code", action="store_true", default=_flag_on("ALLOW_EXECUTE_CODE"),
        help="let the proxy's clients (which send no token) pass execute_code on to Blender; "
        "the addon must allow it too (blender-session blender --allow-execute-code) "
        f"[{ENV_PREFIX}ALLOW_EXECUTE_CODE] (default: off)",
    )  # fmt: skip
    parser.add_argument(
        "--journal-fsync", action="store_true", default=_flag_on("JOURNAL_FSYNC"),
        help="fsync the journal before each batch of replies, to survive power loss as well "
        f"as a killed daemon [{ENV_PREFIX}JOURNAL_FSYNC] (default: off)",
    )  # fmt: skip
    option(
        "--max-in-flight-per-client",
        "MAX_IN_FLIGHT_PER_CLIENT",
        int,
        DEFAULTS["max_in_flight_per_client"],
        "requests one client (by client_id) may have in flight; more are answered 'busy'",
    )
    option(
        "--max-connections",
        "MAX_CONNECTIONS",
        int,
        DEFAULTS["max_connections"],
        "open control connections at once; more are refused with 'busy' (the default fd "
        "limit is 1,024, and journals and Blender links need some)",
    )
    option(
        "--max-proxy-connections",
        "MAX_PROXY_CONNECTIONS",
        int,
        DEFAULTS["max_proxy_connections"],
        "open proxy connections at once (the proxy has no token and takes 16 MiB frames, "
        "so this bounds what unauthenticated peers can make the daemon hold)",
    )
    option(
        "--import-max-bytes",
        "IMPORT_MAX_BYTES",
        int,
        DEFAULTS["import_max_bytes"],
        "an archive being imported may unpack to at most this many bytes",
    )
    option(
        "--import-max-members",
        "IMPORT_MAX_MEMBERS",
        int,
        DEFAULTS["import_max_members"],
        "an archive being imported may hold at most this many files (three per session)",
    )
    option(
        "--import-max-ratio",
        "IMPORT_MAX_RATIO",
        int,
        DEFAULTS["import_max_ratio"],
        "an archive may unpack to at most this many times its compressed size (past its "
        "first 64 MiB): refuses compression bombs early",
    )
    option(
        "--idle-ttl-minutes",
        "IDLE_TTL_MINUTES",
        float,
        DEFAULTS["idle_ttl_s"] / 60,
        "close (and save) an open session idle this long; 0 never does",
    )
    option(
        "--cleanup-older-than-days",
        "CLEANUP_OLDER_THAN_DAYS",
        float,
        DEFAULTS["cleanup_older_than_days"],
        "the schedule deletes closed sessions older than this (never younger than 30 days; "
        "an imported session's age counts from its import); 0 turns it off",
    )
    option(
        "--cleanup-keep",
        "CLEANUP_KEEP",
        int,
        None,
        "the schedule always keeps the newest N closed sessions",
        "no such floor",
    )
    option(
        "--cleanup-interval-hours",
        "CLEANUP_INTERVAL_HOURS",
        float,
        DEFAULTS["cleanup_interval_s"] / 3600,
        "how often the cleanup schedule runs; 0 turns it off",
    )
    parser.add_argument(
        "--no-blend-snapshot", action="store_true", default=_flag_on("NO_BLEND_SNAPSHOT"),
        help="do not save a .blend of the scene beside each closed session "
        f"[{ENV_PREFIX}NO_BLEND_SNAPSHOT] (default: saved, when Blender runs on this machine)",
    )  # fmt: skip
    parser.add_argument(
        "--no-thumbnails", action="store_true", default=_flag_on("NO_THUMBNAILS"),
        help=f"do not render a thumbnail when a session closes [{ENV_PREFIX}NO_THUMBNAILS]",
    )  # fmt: skip
    parser.add_argument(
        "--on-blender-restart", choices=["resume", "mark"],
        default=_env("ON_BLENDER_RESTART") or DEFAULTS["on_blender_restart"],
        help="when a different Blender answers under an open session: resume brings the "
        "session's scene (its last step) back into it before anything more is recorded; "
        "mark only notes the restart and detaches the session "
        f"[{ENV_PREFIX}ON_BLENDER_RESTART] (default: resume)",
    )  # fmt: skip
    option(
        "--checkpoint-every",
        "CHECKPOINT_EVERY",
        int,
        DEFAULTS["checkpoint_every_steps"],
        "take a periodic checkpoint (a .blend of the scene) every this many steps, so a "
        "rewind replays at most about that many; 0 turns periodic ones off",
    )
    option(
        "--checkpoint-budget",
        "CHECKPOINT_BUDGET",
        float,
        DEFAULTS["checkpoint_budget_percent"],
        "periodic checkpoints are skipped while they have cost Blender more than this "
        "percent of the session's time",
    )
    option(
        "--checkpoint-max-count",
        "CHECKPOINT_MAX_COUNT",
        int,
        DEFAULTS["checkpoint_max_count"],
        "checkpoints kept per session; past it (or --checkpoint-max-mib) old automatic "
        "ones are thinned out, never manual ones",
    )
    option(
        "--checkpoint-max-mib",
        "CHECKPOINT_MAX_MIB",
        int,
        DEFAULTS["checkpoint_max_mib"],
        "disk kept for one session's checkpoints, in MiB",
    )
    parser.add_argument(
        "--log-format", choices=["auto", "console", "json"],
        default=_env("LOG_FORMAT") or DEFAULTS["log_format"],
        help="console for people, json for machines; auto picks console on a terminal "
        f"[{ENV_PREFIX}LOG_FORMAT] (default: auto)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"],
        default=_env("LOG_LEVEL") or DEFAULTS["log_level"],
        help=f"[{ENV_PREFIX}LOG_LEVEL] (default: info)",
    )  # fmt: skip
    return parser


def parse_args(argv: list[str] | None = None) -> DaemonConfig:
    parser = build_parser()
    argcomplete.autocomplete(parser)  # answers the shell's TAB, then exits; else nothing
    named = parser.parse_known_args(argv)[0].config
    config_file.apply(
        parser, named or config_file.default_config_path(), ENV_PREFIX, explicit=bool(named)
    )
    args = parser.parse_args(argv)
    if args.heartbeat_interval <= 0 or args.heartbeat_timeout <= args.heartbeat_interval:
        parser.error("--heartbeat-timeout must be longer than --heartbeat-interval, both > 0")
    addon_ports = args.addon_port or [
        int(port) for port in (_env("ADDON_PORT") or str(DEFAULT_ADDON_PORT)).split(",") if port
    ]
    ports = (
        *(("--addon-port", port) for port in addon_ports),
        ("--control-port", args.control_port),
        ("--proxy-port", args.proxy_port or 0),
        ("--web-port", args.web_port),
    )
    for flag, port in ports:
        if not 0 <= port <= 65535:
            parser.error(f"{flag} {port} is not a port number (0-65535)")
    for flag, value in (
        ("--max-connections", args.max_connections),
        ("--max-proxy-connections", args.max_proxy_connections),
        ("--import-max-bytes", args.import_max_bytes),
        ("--import-max-members", args.import_max_members),
        ("--import-max-ratio", args.import_max_ratio),
        ("--checkpoint-max-count", args.checkpoint_max_count),
        ("--checkpoint-max-mib", args.checkpoint_max_mib),
        ("--store-backlog-kib", args.store_backlog_kib),
        ("--store-lease", args.store_lease),
    ):
        if value < 1:
            parser.error(f"{flag} {value} must be at least 1")
    if args.store is not None and not args.store.startswith(STORE_SCHEMES):
        parser.error(f"--store {args.store!r} is not a postgresql:// URL")
    if args.checkpoint_every < 0 or not 0 <= args.checkpoint_budget <= 100:
        parser.error("--checkpoint-every must be >= 0 and --checkpoint-budget 0-100")
    return DaemonConfig(
        data_dir=args.data_dir.expanduser(),
        addon_host=args.addon_host,
        addon_port=addon_ports[0],
        extra_addon_ports=tuple(addon_ports[1:]),
        control_port=args.control_port,
        proxy_port=args.proxy_port,
        heartbeat_interval_s=args.heartbeat_interval,
        heartbeat_timeout_s=args.heartbeat_timeout,
        request_timeout_s=args.request_timeout,
        journal_fsync=args.journal_fsync,
        allow_execute_code=args.allow_execute_code,
        web_port=None if args.no_web else args.web_port,
        store=args.store,
        store_backlog_kib=args.store_backlog_kib,
        store_lease_s=args.store_lease,
        max_in_flight_per_client=args.max_in_flight_per_client,
        max_connections=args.max_connections,
        max_proxy_connections=args.max_proxy_connections,
        import_max_bytes=args.import_max_bytes,
        import_max_members=args.import_max_members,
        import_max_ratio=args.import_max_ratio,
        blend_snapshots=not args.no_blend_snapshot,
        thumbnails=not args.no_thumbnails,
        on_blender_restart=args.on_blender_restart,
        checkpoint_every_steps=args.checkpoint_every,
        checkpoint_budget_percent=args.checkpoint_budget,
        checkpoint_max_count=args.checkpoint_max_count,
        checkpoint_max_mib=args.checkpoint_max_mib,
        idle_ttl_s=args.idle_ttl_minutes * 60 or None,
        cleanup_older_than_days=args.cleanup_older_than_days or None,
        cleanup_keep=args.cleanup_keep,
        cleanup_interval_s=args.cleanup_interval_hours * 3600 or None,
        log_format=args.log_format,
        log_level=args.log_level,
    )
