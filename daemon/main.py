"""`blender-sessiond`: the daemon. It owns the nursery and the parts' lifetimes (the
session service with its journals, the control port, the proxy, the Blender links,
housekeeping), wires them together, and answers `status`.

Start-up order: the data dir is checked and locked before anything in it is read or
written (one daemon per data dir); then the token, the service (which recovers what a
crash left open), the ports, and control.json last, once clients can connect.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import sys
import time

import msgspec
import structlog
import trio

from . import __version__
from .config import DaemonConfig, parse_args
from .control import ControlServer
from .control.server import refusal_line
from .link import AddonLink, LinkConfig
from .listeners import CappedListener
from .logs import configure_logging
from .protocol.ops import StatusResult
from .proxy import ProxyServer
from .proxy.server import refusal_line as proxy_refusal_line
from .sessions import CheckpointPolicy, SessionService
from .store import DataDir, DataDirError, SessionStore
from .store.archive import ImportLimits
from .web.access import Access
from .web.server import WebServer

log = structlog.get_logger("daemon")


class Endpoint(msgspec.Struct, frozen=True):
    """`<data dir>/control.json`: how clients find a running daemon."""

    host: str
    port: int
    pid: int
    started_at: float
    daemon_version: str = __version__
    proxy_port: int | None = None
    # The web timeline: its port, and a one-time login link (opening it sets the cookie).
    web_port: int | None = None
    web_url: str | None = None


class Daemon:
    """The daemon's parts and their lifetimes. Tests reach the parts through the
    attributes."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.data_dir = DataDir(config.data_dir)
        self.store = SessionStore(self.data_dir, journal_fsync=config.journal_fsync)
        self.links = [
            AddonLink(
                LinkConfig(
                    host=config.addon_host,
                    port=port,
                    heartbeat_interval_s=config.heartbeat_interval_s,
                    heartbeat_timeout_s=config.heartbeat_timeout_s,
                    request_timeout_s=config.request_timeout_s,
                    daemon_data_dir=str(config.data_dir),
                )
            )
            for port in (config.addon_port, *config.extra_addon_ports)
        ]
        self.link = self.links[0]
        self.service = SessionService(
            self.store,
            self.links,
            blend_snapshots=config.blend_snapshots,
            thumbnails=config.thumbnails,
            checkpoints=CheckpointPolicy(
                every_steps=config.checkpoint_every_steps,
                budget=config.checkpoint_budget_percent / 100,
                max_count=config.checkpoint_max_count,
                max_bytes=config.checkpoint_max_mib * 2**20,
            ),
            on_blender_restart=config.on_blender_restart,
            shared_store=config.store,
            shared_backlog_bytes=config.store_backlog_kib * 1024,
            shared_lease_s=config.store_lease_s,
            import_limits=ImportLimits(
                max_total_bytes=config.import_max_bytes,
                max_members=config.import_max_members,
                max_ratio=config.import_max_ratio,
            ),
        )
        for link in self.links:
            link.observer = self.service
        self.housekeeper = self.service.housekeeper(
            cleanup_interval_s=config.cleanup_interval_s,
            cleanup_older_than_days=config.cleanup_older_than_days,
            cleanup_keep=config.cleanup_keep,
            idle_ttl_s=config.idle_ttl_s,
        )
        self.control: ControlServer | None = None  # made once the token is known
        self.control_port: int | None = None
        self.proxy_port: int | None = None
        self.web_port: int | None = None
        self.web_url: str | None = None  # the first one-time login link
        self._started_at = 0.0  # trio time, set when it runs

    def status(self) -> StatusResult:
        return StatusResult(
            daemon_version=__version__,
            pid=os.getpid(),
            data_dir=str(self.config.data_dir),
            uptime_s=round(trio.current_time() - self._started_at, 3),
            control=f"{self.config.control_host}:{self.control_port}",
            proxy=(
                None if self.proxy_port is None else f"{self.config.control_host}:{self.proxy_port}"
            ),
            blender=self.link.info(),
            blenders=[link.info() for link in self.links],
            open_sessions=self.service.open_summaries(),
            recovering=sorted(self.service.catalog.recovering),
        )

    def prepare(self) -> str:
        """Check, lock and prepare the data dir; return the control token. Raises
        DataDirError (the message says what to do) or OSError."""
        self.data_dir.check_and_create()
        self.data_dir.lock()
        token = self.data_dir.load_or_create_token()
        if token.warning:
            log.warning("token_was_readable", advice=token.warning)
            print(f"blender-sessiond: warning: {token.warning}", file=sys.stderr)
        self.store.prepare()
        return token.value

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. `started()` reports the control port once clients may connect."""
        config = self.config
        self._started_at = trio.current_time()
        token = self.prepare()
        self.control = ControlServer(
            self.service,
            token,
            self.status,
            max_in_flight_per_client=config.max_in_flight_per_client,
        )
        control = CappedListener(
            "control",
            self.control.handle_connection,
            host=config.control_host,
            port=config.control_port,
            max_connections=config.max_connections,
            refusal=refusal_line,
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.service.run)
                self.control_port = port = await nursery.start(control.run)
                if config.proxy_port is not None:
                    proxy = CappedListener(
                        "proxy",
                        ProxyServer(self.service, config.allow_execute_code).handle_connection,
                        host=config.control_host,
                        port=config.proxy_port,
                        max_connections=config.max_proxy_connections,
                        refusal=proxy_refusal_line,
                    )
                    self.proxy_port = await nursery.start(proxy.run)
                if config.web_port is not None:
                    await self._start_web(nursery, token)
                self._write_endpoint(port)
                for link in self.links:
                    nursery.start_soon(link.run)
                await nursery.start(self.housekeeper.run)
                log.info(
                    "daemon_started",
                    version=__version__,
                    data_dir=str(config.data_dir),
                    control=f"{config.control_host}:{port}",
                    addon=[link.endpoint for link in self.links],
                )
                task_status.started(port)
        finally:
            try:
                self.data_dir.remove_endpoint()
            except OSError as error:
                log.warning("endpoint_not_removed", reason=str(error))
            self.data_dir.unlock()

    async def _start_web(self, nursery: trio.Nursery, token: str) -> None:
        """The web timeline; a port that is taken leaves the daemon running without it."""
        config = self.config
        access = Access(control_token=token)
        server = WebServer(
            self.service, self.status, access, config.control_host, config.web_port or 0
        )
        try:
            self.web_port = await nursery.start(server.run)
        except OSError as error:
            log.error("web_not_started", port=config.web_port, reason=str(error))
            print(
                f"blender-sessiond: the web timeline is off: cannot listen on port "
                f"{config.web_port} ({error.strerror or error}); choose another with --web-port",
                file=sys.stderr,
            )
            return

        def link() -> str:
            return f"http://{config.control_host}:{self.web_port}/?token={access.new_login()}"

        assert self.control is not None
        self.control.web_link = link
        self.web_url = link()
        log.info("web_timeline", url=f"http://{config.control_host}:{self.web_port}/")
        print(f"blender-sessiond: web timeline: {self.web_url}", flush=True)

    def _write_endpoint(self, port: int) -> None:
        endpoint = Endpoint(
            host=self.config.control_host,
            port=port,
            pid=os.getpid(),
            started_at=time.time(),
            proxy_port=self.proxy_port,
            web_port=self.web_port,
            web_url=self.web_url,
        )
        try:
            self.data_dir.write_endpoint(msgspec.json.encode(endpoint))
        except OSError as error:  # the daemon serves all the same; say how to reach it
            log.error("endpoint_not_written", reason=str(error), control_port=port)
            print(
                f"blender-sessiond: cannot write {self.data_dir.path / 'control.json'} "
                f"({error.strerror or error}); clients reach this daemon with "
                f"--control-port {port}",
                file=sys.stderr,
            )


def _raise_fd_limit() -> None:
    """Use the hard limit on open files: each connection and open journal is one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _main(config: DaemonConfig) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Daemon(config).run)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("daemon_stopping", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


GIL_SWITCH_INTERVAL_S = 0.001


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    configure_logging(config.log_format, config.log_level)
    _raise_fd_limit()
    # Heavy reads (history pages, records, recovery) run in worker threads; the event
    # loop waits for the GIL up to this long each time it wants it back (Python's
    # default, 5 ms, showed as the heartbeat's p99 while two readers paged through a
    # 1M-command history).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        trio.run(_main, config)
    except BaseExceptionGroup as group:
        _exit_for(group, config)
        raise
    except (DataDirError, OSError) as error:
        _exit_for(error, config)
        raise


def _exit_for(error: BaseException, config: DaemonConfig) -> None:
    """A start-up failure a person can fix: one line on stderr, exit 1."""
    leaf = error
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    if isinstance(leaf, DataDirError):
        print(f"blender-sessiond: {leaf}", file=sys.stderr)
        sys.exit(1)
    if isinstance(leaf, OSError) and leaf.errno in (errno.EADDRINUSE, errno.EACCES):
        print(
            f"blender-sessiond: cannot listen: {leaf.strerror or leaf} (is something else "
            f"using control port {config.control_port}? pick another with --control-port)",
            file=sys.stderr,
        )
        sys.exit(1)
    if isinstance(leaf, OSError):
        print(f"blender-sessiond: {leaf.strerror or leaf} ({leaf.filename or ''})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
