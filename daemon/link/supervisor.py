"""The daemon's link to one Blender addon: connect, hello, heartbeat, requests.

`AddonLink.run()` is the supervisor: it connects, serves the connection (a `Channel`
with its reader, writer and expiry tasks, then the heartbeat), and when the connection
ends it reconnects with capped exponential backoff and jitter, for as long as it runs.
Whatever a connection's tasks raise ends that connection only: nothing the peer sends
can end the daemon. Requests from any task go through `submit()` or `request()`;
they carry ids and may be pipelined.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import msgspec
import structlog
import trio

from ..protocol import (
    EventReceived,
    LocalProtocolError,
    NoAnswer,
    Outcome,
    RemoteProtocolError,
)
from ..protocol.messages import (
    AttachSessionParams,
    HelloResult,
    LinkSuccess,
    PongResult,
)
from ..protocol.ops import BlenderLinkInfo, PongStats
from .channel import Channel, Connect, Deliver, LinkLost, OnLate, Waiter
from .errors import first_message, found_in, outcome_error, unavailable
from .handshake import handshake
from .heartbeat import heartbeat_loop
from .status import LinkConfig, LinkSnapshot, LinkStatus

log = structlog.get_logger("link")


class LinkObserver(Protocol):
    def link_changed(self, link: AddonLink) -> None: ...
    def scene_changed(self, link: AddonLink, data: msgspec.Raw, missed: int) -> None: ...
    def scene_edited(self, link: AddonLink, data: msgspec.Raw) -> None: ...
    def blender_connected(self, link: AddonLink, previous_instance: str) -> None: ...
    # Entered by the link's reader around the delivery of what one read brought in
    # (asked once per connection; entered again for each read).
    def handling_answers(self, link: AddonLink) -> contextlib.AbstractContextManager[None]: ...


async def _open_tcp(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


_EXPECTED_ENDINGS = (
    LinkLost,
    RemoteProtocolError,
    LocalProtocolError,  # a call on a core that the reader already saw fail
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


class AddonLink:
    def __init__(
        self,
        config: LinkConfig,
        observer: LinkObserver | None = None,
        *,
        connect: Connect = _open_tcp,
        jitter: random.Random | None = None,
    ) -> None:
        self.config = config
        self.snapshot = LinkSnapshot()
        self.attached = AttachSessionParams(session_id=None)
        self.observer = observer
        self._connect = connect
        self._jitter = jitter or random.Random()
        self._channel: Channel | None = None
        self._connected = trio.Event()
        self._changed = trio.Event()
        self._unreachable_since: float | None = None
        self._unreachable_logged_at: float | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def connected(self) -> bool:
        return self.snapshot.status in (LinkStatus.CONNECTED, LinkStatus.BUSY)

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def addon_commands(self) -> list[str]:
        """The commands the connected addon said it serves (in its hello)."""
        return self.snapshot.commands

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def wait_until(self, predicate: Callable[[AddonLink], bool]) -> None:
        """Wait until `predicate(link)` holds; it is checked at every status change."""
        while not predicate(self):
            await self._changed.wait()

    # --- supervisor -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and stay connected until cancelled. Never raises for a connection."""
        task_status.started()
        failures = 0
        while True:
            try:
                stream = await self._connect(self.config.host, self.config.port)
            except OSError as error:
                self._lost(f"cannot connect to {self.endpoint}: {error.strerror or error}")
            else:
                said_hello = await self._serve_contained(stream)
                if said_hello:
                    failures = 0
            await trio.sleep(self._backoff_s(failures))
            failures += 1
            self.snapshot.reconnects += 1

    async def _serve_contained(self, stream: trio.abc.Stream) -> bool:
        """Serve one connection; whatever ends it is recorded, never raised."""
        channel = Channel(stream, self.endpoint, self._event, self._handling_answers())
        try:
            await self._serve(channel)
        except* _EXPECTED_ENDINGS as group:
            self._lost(first_message(group), found_in(group))
        except* Exception as group:  # a bug, or a peer we did not foresee: this link only
            log.error("link_failed", endpoint=self.endpoint, exc_info=group)
            self._lost(f"the link to {self.endpoint} failed: {first_message(group)}")
        finally:
            self._channel = None
            channel.fail_all()
            with trio.move_on_after(1, shield=True):
                await stream.aclose()
        return channel.said_hello

    def _backoff_s(self, failures: int) -> float:
        """Capped exponential backoff with equal jitter: never 0, never over the cap."""
        ceiling = min(
            self.config.reconnect_max_s, self.config.reconnect_initial_s * 2.0 ** min(failures, 32)
        )
        return ceiling / 2 + self._jitter.uniform(0, ceiling / 2)

    async def _serve(self, channel: Channel) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.read_loop)
            nursery.start_soon(channel.write_loop)
            nursery.start_soon(channel.expire_loop)
            hello = await handshake(
                channel, self.attached, self.config.heartbeat_timeout_s, self._connect,
                self.config.daemon_data_dir,
            )  # fmt: skip
            channel.said_hello = True
            self._channel = channel
            self._on_hello(hello)
            nursery.start_soon(
                heartbeat_loop,
                channel,
                self.config.heartbeat_interval_s,
                self.config.heartbeat_timeout_s,
                self._on_pong,
                self._on_silence,
            )

    def _handling_answers(self) -> contextlib.AbstractContextManager[None]:
        if self.observer is None:
            return contextlib.nullcontext()
        return self.observer.handling_answers(self)

    def _event(self, event: EventReceived) -> None:
        if self.observer is None:
            return
        if event.event.event == "scene_changed":
            self.observer.scene_changed(self, event.event.data, event.missed)
        elif event.event.event == "scene_edited":
            self.observer.scene_edited(self, event.event.data)

    def _on_hello(self, hello: HelloResult) -> None:
        snap = self.snapshot
        previous_instance = snap.instance_id
        snap.blender_version, snap.file, snap.scene = hello.blender_version, hello.file, hello.scene
        snap.addon_version, snap.commands = hello.addon_version, hello.commands
        snap.execute_code_enabled = hello.execute_code_enabled
        snap.instance_id = hello.instance_id
        snap.last_heartbeat = time.time()
        snap.last_error = snap.found = ""
        snap.status = LinkStatus.CONNECTED
        self._connected.set()
        self._unreachable_since = self._unreachable_logged_at = None
        log.info(
            "link_connected",
            endpoint=self.endpoint,
            blender=hello.blender_version,
            addon=hello.addon_version,
            instance=hello.instance_id,
            file=hello.file,
        )
        if self.observer is not None:
            self.observer.blender_connected(self, previous_instance)
        self._notify()

    def _lost(self, reason: str, found: str = "") -> None:
        was_connected = self.connected
        self.snapshot.status = LinkStatus.DISCONNECTED
        self.snapshot.last_error = reason
        if found and found != self.snapshot.found:
            log.error("wrong_addon_on_port", endpoint=self.endpoint, found=found, advice=reason)
        self.snapshot.found = found
        if self._connected.is_set():
            self._connected = trio.Event()
        if was_connected:
            log.warning("link_lost", endpoint=self.endpoint, reason=reason)
        else:
            self._log_unreachable(reason)
        self._notify()

    def _log_unreachable(self, reason: str) -> None:
        """While Blender cannot be reached, say so now and then, not at every retry."""
        now = trio.current_time()
        if self._unreachable_since is None:
            self._unreachable_since = now
        logged = self._unreachable_logged_at
        if logged is None or now - logged >= self.config.unreachable_log_interval_s:
            self._unreachable_logged_at = now
            log.warning(
                "link_unreachable",
                endpoint=self.endpoint,
                reason=reason,
                for_s=round(now - self._unreachable_since, 1),
            )

    def _on_silence(self) -> None:
        """No pong within the timeout: Blender is stopped, frozen or gone. Senders are
        told now; the connection stays, so late answers still reach the records."""
        self.snapshot.status = LinkStatus.DISCONNECTED
        self.snapshot.last_error = (
            f"no heartbeat from {self.endpoint} for {self.config.heartbeat_timeout_s} s"
        )
        if self._connected.is_set():
            self._connected = trio.Event()
        log.warning("link_silent", endpoint=self.endpoint, reason=self.snapshot.last_error)
        if self._channel is not None:
            self._channel.stop_answering()
        self._notify()

    def _on_pong(self, pong: PongResult | None, rtt_ms: float) -> None:
        snap = self.snapshot
        was = snap.status
        busy = pong is not None and pong.main_thread.busy
        snap.status = LinkStatus.BUSY if busy else LinkStatus.CONNECTED
        if pong is not None:
            snap.busy_for_ms = pong.main_thread.busy_for_ms
            snap.queue_depth = pong.main_thread.queue_depth
        snap.last_heartbeat = time.time()
        snap.pong_rtts.append(rtt_ms)
        if was is LinkStatus.DISCONNECTED:
            snap.last_error = ""
            self._connected.set()
            log.warning("link_answering_again", endpoint=self.endpoint)
        if snap.status is not was:
            log.info(
                "link_status",
                endpoint=self.endpoint,
                status=snap.status.value,
                busy_for_ms=snap.busy_for_ms,
                queue_depth=snap.queue_depth,
            )
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        if self.observer is not None:
            self.observer.link_changed(self)

    # --- requests -------------------------------------------------------------------

    async def attach(self, session_id: str | None, name: str | None = None) -> None:
        """Tell the addon which session it serves, or none (remembered across reconnects)."""
        self.attached = AttachSessionParams(session_id=session_id, name=name)
        if self.connected and self._channel is not None:
            outcome = await self._channel.call("attach_session", self.attached)
            if not isinstance(outcome, LinkSuccess):
                log.info("attach_deferred", endpoint=self.endpoint, outcome=repr(outcome))

    def submit(
        self, type: str, params: bytes, deliver: Deliver, on_late: OnLate | None = None
    ) -> None:
        """Send a command without waiting. `deliver(outcome)` is called exactly once,
        from the link's tasks; `on_late(answer)` if the answer comes after a TIMED_OUT
        or STOPPED_ANSWERING outcome. Both must not block.

        Raises RemoteProtocolError(blender_unavailable) when no Blender is connected.
        """
        channel = self._channel
        if not self.connected or channel is None or not channel.open:
            raise self.unavailable_error()
        deadline = trio.current_time() + self.config.request_timeout_s
        channel.send(type, params, Waiter(type, deliver, deadline, on_late))

    async def request(self, type: str, params: bytes | None = None) -> bytes:
        """Send a command and return its result's JSON bytes (for the daemon's own
        reads: state, snapshots). Raises RemoteProtocolError: the addon's own error,
        `blender_unavailable`, or `timeout` after request_timeout_s."""
        channel = self._channel
        if not self.connected or channel is None or not channel.open:
            raise self.unavailable_error()
        with trio.move_on_after(self.config.request_timeout_s):
            outcome = await channel.call(type, params)
            if isinstance(outcome, LinkSuccess):
                return bytes(outcome.result)
            raise self.error_for(type, outcome)
        raise self.error_for(type, NoAnswer.TIMED_OUT)

    def error_for(self, type: str, outcome: Outcome) -> RemoteProtocolError:
        """The client-facing error of an outcome that is not a success."""
        return outcome_error(self.endpoint, self.config, self.snapshot, type, outcome)

    def unavailable_error(self, *, lost: bool = False) -> RemoteProtocolError:
        return unavailable(self.endpoint, self.snapshot.last_error, lost=lost)

    def info(self) -> BlenderLinkInfo:
        snap = self.snapshot
        return BlenderLinkInfo(
            endpoint=self.endpoint,
            status=snap.status.value,
            connected=self.connected,
            blender_version=snap.blender_version,
            file=snap.file,
            last_heartbeat=snap.last_heartbeat,
            busy_for_ms=snap.busy_for_ms,
            queue_depth=snap.queue_depth,
            last_error=snap.last_error,
            execute_code_enabled=snap.execute_code_enabled,
            found=snap.found,
            instance_id=snap.instance_id,
            pong_ms=_pong_stats(snap.pong_rtts),
        )


def _pong_stats(rtts: Iterable[float]) -> PongStats | None:
    ordered = sorted(rtts)
    if not ordered:
        return None
    return PongStats(
        samples=len(ordered),
        p50=round(ordered[len(ordered) // 2], 3),
        p99=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        max=round(ordered[-1], 3),
    )
