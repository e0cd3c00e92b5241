"""`blender-sessiond`: the daemon's entry point. It wires the parts together and owns
their lifetimes: session manager (journals), control server, addon link."""

from __future__ import annotations

import os
import signal
import sys
import time

import msgspec
import structlog
import trio

from . import __version__
from .cleanup import Housekeeper
from .config import DaemonConfig, parse_args
from .control import ControlServer
from .link import AddonLink, LinkConfig
from .logs import configure_logging
from .proxy import ProxyServer
from .sessions import SessionManager
from .store import SessionStore

log = structlog.get_logger("daemon")


class Endpoint(msgspec.Struct, frozen=True):
    """`<data dir>/control.json`: how clients find a running daemon."""

    host: str
    port: int
    pid: int
    started_at: float
    daemon_version: str = __version__
    proxy_port: int | None = None


class Daemon:
    """The daemon's parts and their lifetimes: session manager (journals), control
    server, addon link. Tests reach the parts through the attributes."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.store = SessionStore(config.data_dir, journal_fsync=config.journal_fsync)
        self.links = [
            AddonLink(
                LinkConfig(
                    host=config.addon_host,
                    port=port,
                    heartbeat_interval_s=config.heartbeat_interval_s,
                    heartbeat_timeout_s=config.heartbeat_timeout_s,
                    request_timeout_s=config.request_timeout_s,
                )
            )
            for port in (config.addon_port, *config.extra_addon_ports)
        ]
        self.link = self.links[0]
        self.manager = SessionManager(
            self.store,
            self.link,
            extra_links=self.links[1:],
            blend_snapshots=config.blend_snapshots,
            thumbnails=config.thumbnails,
        )
        for link in self.links:
            link.observer = self.manager
        self.control_port: int | None = None
        self.proxy_port: int | None = None

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. `started()` reports the control port once clients may connect."""
        config = self.config
        self.store.prepare()
        token = self.store.load_or_create_token()
        server = ControlServer(
            self.manager,
            token,
            host=config.control_host,
            port=config.control_port,
            max_in_flight_per_client=config.max_in_flight_per_client,
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.manager.run)
                self.control_port = port = await nursery.start(server.run)
                self.manager.control_endpoint = f"{config.control_host}:{port}"
                if config.proxy_port is not None:
                    proxy = ProxyServer(
                        self.manager, host=config.control_host, port=config.proxy_port
                    )
                    self.proxy_port = await nursery.start(proxy.run)
                    self.manager.proxy_endpoint = f"{config.control_host}:{self.proxy_port}"
                endpoint = Endpoint(
                    host=config.control_host,
                    port=port,
                    pid=os.getpid(),
                    started_at=time.time(),
                    proxy_port=self.proxy_port,
                )
                self.store.write_endpoint(msgspec.json.encode(endpoint))
                for link in self.links:
                    nursery.start_soon(link.run)
                housekeeper = Housekeeper(
                    self.manager,
                    cleanup_interval_s=config.cleanup_interval_s,
                    cleanup_older_than_days=config.cleanup_older_than_days,
                    cleanup_keep=config.cleanup_keep,
                    idle_ttl_s=config.idle_ttl_s,
                )
                await nursery.start(housekeeper.run)
                log.info(
                    "daemon_started",
                    version=__version__,
                    data_dir=str(config.data_dir),
                    control=self.manager.control_endpoint,
                    addon=[link.endpoint for link in self.links],
                )
                task_status.started(port)
        finally:
            self.store.remove_endpoint()


async def _main(config: DaemonConfig) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Daemon(config).run)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("daemon_stopping", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    configure_logging(config.log_format, config.log_level)
    try:
        trio.run(_main, config)
    except OSError as error:
        print(
            f"blender-sessiond: {error.strerror or error} "
            f"(is another daemon using control port {config.control_port}? "
            "pick another with --control-port)",
            file=sys.stderr,
        )
        sys.exit(1)
    except BaseExceptionGroup as group:
        oserrors, rest = group.split(OSError)
        if oserrors is None or rest is not None:
            raise
        first = oserrors.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        print(
            f"blender-sessiond: {first} (is another daemon using control port "
            f"{config.control_port}? pick another with --control-port)",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
