"""The daemon's settings: defaults, environment variables, command-line flags."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "blender-scene-sessions"
ENV_PREFIX = "BLENDER_SESSIOND_"
DEFAULT_ADDON_PORT = 9876
DEFAULT_CONTROL_PORT = 9877


def default_data_dir() -> Path:
    env = os.environ.get(f"{ENV_PREFIX}DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME))


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    data_dir: Path
    addon_host: str = "127.0.0.1"
    addon_port: int = DEFAULT_ADDON_PORT
    extra_addon_ports: tuple[int, ...] = ()  # more Blenders to track at once
    control_host: str = "127.0.0.1"
    control_port: int = DEFAULT_CONTROL_PORT
    proxy_port: int | None = None  # off unless set; 0 picks a free port
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 5.0
    request_timeout_s: float = 60.0
    journal_fsync: bool = False
    max_in_flight_per_client: int = 128
    blend_snapshots: bool = True
    thumbnails: bool = True
    idle_ttl_s: float | None = 30 * 60.0
    cleanup_older_than_days: float | None = 90.0
    cleanup_keep: int | None = None
    cleanup_interval_s: float | None = 6 * 3600.0
    log_format: str = "auto"
    log_level: str = "info"


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blender-sessiond",
        description=(
            "Run the blender-scene-sessions daemon: it connects to the Blender addon, "
            "heartbeats it, records every command sent through it into a session, and "
            "saves each session to the data dir. Every flag can also be set with the "
            f"environment variable shown ({ENV_PREFIX}...)."
        ),
    )
    add = parser.add_argument
    add(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help=f"where sessions and the control token live [{ENV_PREFIX}DATA_DIR] "
        "(default: the platform's user data dir, e.g. ~/.local/share/blender-scene-sessions)",
    )
    add(
        "--addon-host",
        default=_env("ADDON_HOST", "127.0.0.1"),
        help=f"host of the Blender addon [{ENV_PREFIX}ADDON_HOST] (default: 127.0.0.1)",
    )
    add(
        "--addon-port",
        type=int,
        action="append",
        default=None,
        help="port of the Blender addon; repeat it to track several Blenders (the first is "
        f"the default for new sessions) [{ENV_PREFIX}ADDON_PORT, comma-separated] "
        f"(default: {DEFAULT_ADDON_PORT})",
    )
    add(
        "--control-port",
        type=int,
        default=int(_env("CONTROL_PORT", str(DEFAULT_CONTROL_PORT))),
        help=f"loopback port for clients; 0 picks a free one [{ENV_PREFIX}CONTROL_PORT] "
        f"(default: {DEFAULT_CONTROL_PORT})",
    )
    proxy_default = _env("PROXY_PORT", "")
    add(
        "--proxy-port",
        type=int,
        default=int(proxy_default) if proxy_default else None,
        help="also listen on this loopback port for clients written for the addon "
        "(blender-mcp's server: set its BLENDER_PORT to this); their commands are recorded "
        "in the session bound to this Blender; 0 picks a free port "
        f"[{ENV_PREFIX}PROXY_PORT] (default: off)",
    )
    add(
        "--heartbeat-interval",
        type=float,
        default=float(_env("HEARTBEAT_INTERVAL", "1.0")),
        help=f"seconds between pings to Blender [{ENV_PREFIX}HEARTBEAT_INTERVAL] (default: 1)",
    )
    add(
        "--heartbeat-timeout",
        type=float,
        default=float(_env("HEARTBEAT_TIMEOUT", "5.0")),
        help=f"seconds without a pong before Blender counts as gone "
        f"[{ENV_PREFIX}HEARTBEAT_TIMEOUT] (default: 5)",
    )
    add(
        "--request-timeout",
        type=float,
        default=float(_env("REQUEST_TIMEOUT", "60")),
        help=f"seconds to wait for Blender to answer a command [{ENV_PREFIX}REQUEST_TIMEOUT] "
        "(default: 60)",
    )
    add(
        "--journal-fsync",
        action="store_true",
        default=_env("JOURNAL_FSYNC", "0").lower() in ("1", "true", "yes"),
        help=f"fsync the journal after each batch of commands, to survive power loss as well "
        f"as a killed daemon [{ENV_PREFIX}JOURNAL_FSYNC] (default: off)",
    )
    add(
        "--max-in-flight-per-client",
        type=int,
        default=int(_env("MAX_IN_FLIGHT_PER_CLIENT", "128")),
        help="requests one client (by client_id) may have in flight; more are answered "
        f"'busy' [{ENV_PREFIX}MAX_IN_FLIGHT_PER_CLIENT] (default: 128)",
    )
    add(
        "--idle-ttl-minutes",
        type=float,
        default=float(_env("IDLE_TTL_MINUTES", "30")),
        help="close (and save) an open session idle this long; 0 never does "
        f"[{ENV_PREFIX}IDLE_TTL_MINUTES] (default: 30)",
    )
    add(
        "--cleanup-older-than-days",
        type=float,
        default=float(_env("CLEANUP_OLDER_THAN_DAYS", "90")),
        help="the schedule deletes closed sessions older than this (never younger than 30 "
        f"days); 0 turns it off [{ENV_PREFIX}CLEANUP_OLDER_THAN_DAYS] (default: 90)",
    )
    keep_default = _env("CLEANUP_KEEP", "")
    add(
        "--cleanup-keep",
        type=int,
        default=int(keep_default) if keep_default else None,
        help="the schedule always keeps the newest N closed sessions "
        f"[{ENV_PREFIX}CLEANUP_KEEP] (default: no such floor)",
    )
    add(
        "--cleanup-interval-hours",
        type=float,
        default=float(_env("CLEANUP_INTERVAL_HOURS", "6")),
        help=f"how often the cleanup schedule runs; 0 turns it off "
        f"[{ENV_PREFIX}CLEANUP_INTERVAL_HOURS] (default: 6)",
    )
    add(
        "--no-blend-snapshot",
        action="store_true",
        default=_env("NO_BLEND_SNAPSHOT", "0").lower() in ("1", "true", "yes"),
        help="do not save a .blend of the scene beside each closed session "
        f"[{ENV_PREFIX}NO_BLEND_SNAPSHOT] (default: saved, when Blender runs on this machine)",
    )
    add(
        "--no-thumbnails",
        action="store_true",
        default=_env("NO_THUMBNAILS", "0").lower() in ("1", "true", "yes"),
        help=f"do not render a thumbnail when a session closes [{ENV_PREFIX}NO_THUMBNAILS]",
    )
    add(
        "--log-format",
        choices=["auto", "console", "json"],
        default=_env("LOG_FORMAT", "auto"),
        help=f"console for people, json for machines; auto picks console on a terminal "
        f"[{ENV_PREFIX}LOG_FORMAT] (default: auto)",
    )
    add(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=_env("LOG_LEVEL", "info"),
        help=f"[{ENV_PREFIX}LOG_LEVEL] (default: info)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> DaemonConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.heartbeat_interval <= 0 or args.heartbeat_timeout <= args.heartbeat_interval:
        parser.error("--heartbeat-timeout must be longer than --heartbeat-interval, both > 0")
    addon_ports = args.addon_port or [
        int(port) for port in _env("ADDON_PORT", str(DEFAULT_ADDON_PORT)).split(",") if port
    ]
    ports = (
        *(("--addon-port", port) for port in addon_ports),
        ("--control-port", args.control_port),
        ("--proxy-port", args.proxy_port or 0),
    )
    for flag, port in ports:
        if not 0 <= port <= 65535:
            parser.error(f"{flag} {port} is not a port number (0-65535)")
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
        max_in_flight_per_client=args.max_in_flight_per_client,
        blend_snapshots=not args.no_blend_snapshot,
        thumbnails=not args.no_thumbnails,
        idle_ttl_s=args.idle_ttl_minutes * 60 or None,
        cleanup_older_than_days=args.cleanup_older_than_days or None,
        cleanup_keep=args.cleanup_keep,
        cleanup_interval_s=args.cleanup_interval_hours * 3600 or None,
        log_format=args.log_format,
        log_level=args.log_level,
    )
