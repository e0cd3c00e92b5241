"""The daemon's connection to the Blender addon: connect, hello, heartbeat, requests.

One `AddonLink` per addon endpoint. `run()` is its supervisor: it connects, serves the
connection (a reader task and a heartbeat task), and when the connection is lost it
reconnects with capped exponential backoff and jitter, for as long as it runs.
Requests from any task go through `request()`; they carry ids and may be pipelined.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

import msgspec
import structlog
import trio

from ..protocol import (
    DECODE_ERRORS,
    NEED_DATA,
    ConnectionClosed,
    ErrorCode,
    EventReceived,
    LinkConnection,
    RemoteProtocolError,
    ResponseReceived,
)
from ..protocol.identify import (
    CLOSES_EACH_REQUEST,
    LENGTH_PREFIXED_PROBE,
    OTHER_PROTOCOL,
    SILENT,
    advice,
    identify_length_reply,
    identify_text_reply,
)
from ..protocol.messages import (
    AttachSessionParams,
    HelloParams,
    HelloResult,
    LinkFailure,
    LinkSuccess,
    PongResult,
    SubscribeParams,
)

log = structlog.get_logger("link")

# Read size for the link socket: big enough that a 1.6 MB snapshot takes few reads.
RECEIVE_CHUNK_BYTES = 256 * 1024
_encoder = msgspec.json.Encoder()
_hello_decoder = msgspec.json.Decoder(HelloResult)
_pong_decoder = msgspec.json.Decoder(PongResult)


class LinkStatus(StrEnum):
    CONNECTING = "connecting"  # never connected yet, or reconnecting
    CONNECTED = "connected"  # pongs arrive, main thread free
    BUSY = "busy"  # pongs arrive, Blender's main thread is busy (render, heavy op)
    DISCONNECTED = "disconnected"  # socket closed or no pong within the timeout


@dataclass(frozen=True, slots=True)
class LinkConfig:
    host: str = "127.0.0.1"
    port: int = 9876
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 5.0
    request_timeout_s: float = 60.0
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 5.0


@dataclass(slots=True)
class LinkSnapshot:
    """What the daemon knows about the Blender at the other end, for records and status."""

    status: LinkStatus = LinkStatus.CONNECTING
    blender_version: str = ""
    file: str = ""
    scene: str = ""
    addon_version: str = ""
    commands: list[str] = field(default_factory=list)
    execute_code_enabled: bool = False
    last_heartbeat: float | None = None  # wall clock, for records
    busy_for_ms: float = 0.0
    queue_depth: int = 0
    last_error: str = ""
    reconnects: int = 0
    found: str = ""  # what answered instead of this project's addon, when not ours


class LinkObserver(Protocol):
    def link_changed(self, link: AddonLink) -> None: ...
    def scene_changed(self, link: AddonLink, data: msgspec.Raw, missed: int) -> None: ...


class _LinkLost(Exception):
    pass


class _ForeignPeer(_LinkLost):
    """Something other than this project's addon answers on the port."""

    def __init__(self, found: str, endpoint: str) -> None:
        super().__init__(advice(found, endpoint))
        self.found = found


# What a request's sender gets back: the addon's answer, LOST (the connection dropped
# before it answered) or TIMED_OUT (no answer within request_timeout_s).
LOST: Literal["lost"] = "lost"
TIMED_OUT: Literal["timed_out"] = "timed_out"
Outcome = LinkSuccess | LinkFailure | Literal["lost", "timed_out"]
Deliver = Callable[[Outcome], None]


class _Pending:
    __slots__ = ("deadline", "deliver", "type")

    def __init__(self, type: str, deliver: Deliver, deadline: float) -> None:
        self.type = type
        self.deliver = deliver
        self.deadline = deadline


Connect = Callable[[str, int], Awaitable[trio.abc.Stream]]


async def _open_tcp(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


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
        self._conn: LinkConnection | None = None
        self._stream: trio.abc.Stream | None = None
        # Requests waiting for the writer task: pipelined requests leave in one send.
        self._outgoing = bytearray()
        self._outgoing_ready = trio.Event()
        # In send order, so the first one has the earliest deadline.
        self._pending: dict[int | str, _Pending] = {}
        self._pending_added = trio.Event()
        self._connected = trio.Event()
        self._changed = trio.Event()
        self._said_hello = False

    @property
    def endpoint(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def connected(self) -> bool:
        return self.snapshot.status in (LinkStatus.CONNECTED, LinkStatus.BUSY)

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def wait_until(self, predicate: Callable[[AddonLink], bool]) -> None:
        """Wait until `predicate(link)` holds; it is checked at every status change."""
        while not predicate(self):
            await self._changed.wait()

    # --- supervisor -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and stay connected until cancelled. Never raises for a lost link."""
        task_status.started()
        failures = 0
        while True:
            try:
                stream = await self._connect(self.config.host, self.config.port)
            except OSError as error:
                self._lost(f"cannot connect to {self.endpoint}: {error.strerror or error}")
            else:
                try:
                    await self._serve(stream)
                except* (
                    _LinkLost,
                    RemoteProtocolError,
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                ) as group:
                    self._lost(_first_message(group), _found_in(group))
                    if self._said_hello:
                        failures = 0
                finally:
                    self._fail_pending()
                    with trio.move_on_after(1, shield=True):
                        await stream.aclose()
            await trio.sleep(self._backoff_s(failures))
            failures += 1
            self.snapshot.reconnects += 1

    def _backoff_s(self, failures: int) -> float:
        """Capped exponential backoff with equal jitter: never 0, never over the cap."""
        ceiling = min(
            self.config.reconnect_max_s, self.config.reconnect_initial_s * 2.0 ** min(failures, 32)
        )
        return ceiling / 2 + self._jitter.uniform(0, ceiling / 2)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        conn = LinkConnection()
        self._outgoing.clear()  # nothing from a lost connection is sent on the new one
        self._conn, self._stream = conn, stream
        self._said_hello = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_loop, conn, stream)
                nursery.start_soon(self._write_loop, stream)
                nursery.start_soon(self._expire_loop)
                self._on_hello(await self._handshake())
                self._said_hello = True
                nursery.start_soon(self._heartbeat_loop)
        finally:
            self._conn = self._stream = None

    async def _handshake(self) -> HelloResult:
        try:
            with trio.fail_after(self.config.heartbeat_timeout_s):
                hello = _hello_decoder.decode(
                    await self._call("hello", HelloParams(client="blender-sessiond"))
                )
                if self.attached.session_id is not None:
                    await self._call("attach_session", self.attached)
                await self._call("subscribe", SubscribeParams(events=["scene_changed"]))
        except trio.TooSlowError:
            # Silence: a length-prefixed blender-mcp waits for 2 GB after our "{"... ask it
            # in its own framing on a second connection.
            raise _ForeignPeer(await self._probe_length_prefixed(), self.endpoint) from None
        except DECODE_ERRORS as error:
            raise _LinkLost(
                f"{self.endpoint} answered hello with something else: {error}"
            ) from None
        return hello

    async def _probe_length_prefixed(self) -> str:
        received = b""
        with trio.move_on_after(self.config.heartbeat_timeout_s):
            stream = await self._connect(self.config.host, self.config.port)
            try:
                await stream.send_all(LENGTH_PREFIXED_PROBE)
                while data := await stream.receive_some(RECEIVE_CHUNK_BYTES):
                    received += data
                    found = identify_length_reply(received)
                    if found:
                        return found
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                await trio.aclose_forcefully(stream)
            return CLOSES_EACH_REQUEST if received else SILENT
        return SILENT

    def _on_hello(self, hello: HelloResult) -> None:
        snap = self.snapshot
        snap.blender_version, snap.file, snap.scene = hello.blender_version, hello.file, hello.scene
        snap.addon_version, snap.commands = hello.addon_version, hello.commands
        snap.execute_code_enabled = hello.execute_code_enabled
        snap.last_heartbeat = time.time()
        snap.last_error = snap.found = ""
        snap.status = LinkStatus.CONNECTED
        self._connected.set()
        log.info(
            "link_connected",
            endpoint=self.endpoint,
            blender=hello.blender_version,
            addon=hello.addon_version,
            file=hello.file,
        )
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
            log.debug("link_connect_failed", endpoint=self.endpoint, reason=reason)
        self._notify()

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            _deliver(entry, LOST)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        if self.observer is not None:
            self.observer.link_changed(self)

    # --- reading --------------------------------------------------------------------

    async def _read_loop(self, conn: LinkConnection, stream: trio.abc.Stream) -> None:
        received_any = False
        while True:
            data = await stream.receive_some(RECEIVE_CHUNK_BYTES)
            conn.receive_data(data)
            received_any = received_any or bool(data)
            while (event := self._next_event(conn, ended=not data)) is not NEED_DATA:
                match event:
                    case ResponseReceived(request_id=request_id, response=response):
                        pending = self._pending.pop(request_id, None) if request_id else None
                        if pending is not None:
                            _deliver(pending, response)
                    case EventReceived(event=link_event, missed=missed):
                        if link_event.event == "scene_changed" and self.observer is not None:
                            self.observer.scene_changed(self, link_event.data, missed)
                    case ConnectionClosed():
                        if not self._said_hello:
                            raise _ForeignPeer(
                                CLOSES_EACH_REQUEST
                                if received_any
                                else f"{CLOSES_EACH_REQUEST} (without answering)",
                                self.endpoint,
                            )
                        raise _LinkLost(f"{self.endpoint} closed the connection")
            if not self._said_hello:
                # Every complete line is handled; a JSON object left over with no newline
                # is how the older blender-mcp addon answers.
                found = identify_text_reply(conn.unterminated_tail())
                if found:
                    raise _ForeignPeer(found, self.endpoint)

    def _next_event(self, conn: LinkConnection, *, ended: bool) -> object:
        try:
            return conn.next_event()
        except RemoteProtocolError:
            if self._said_hello:
                raise
            # Not our addon: it closed mid-reply, or sent something that is not NDJSON.
            raise _ForeignPeer(
                CLOSES_EACH_REQUEST if ended else OTHER_PROTOCOL, self.endpoint
            ) from None

    async def _write_loop(self, stream: trio.abc.Stream) -> None:
        """The link's only writer: sends whatever requests queued up since the last send."""
        while True:
            await self._outgoing_ready.wait()
            self._outgoing_ready = trio.Event()
            data = bytes(self._outgoing)
            self._outgoing.clear()
            await stream.send_all(data)

    async def _expire_loop(self) -> None:
        """Answer requests that outlived request_timeout_s with TIMED_OUT, oldest first."""
        while True:
            if not self._pending:
                await self._pending_added.wait()
                self._pending_added = trio.Event()
                continue
            request_id, oldest = next(iter(self._pending.items()))
            await trio.sleep_until(oldest.deadline)
            if self._pending.get(request_id) is oldest:
                del self._pending[request_id]
                if self._conn is not None:
                    self._conn.forget(request_id)
                _deliver(oldest, TIMED_OUT)

    # --- heartbeat ------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Ping every interval. Dead when no pong arrives within the timeout of the last
        one; a pong that says the main thread is busy keeps the link alive."""
        last_pong_at = trio.current_time()
        while True:
            sent_at = trio.current_time()
            try:
                with trio.fail_at(last_pong_at + self.config.heartbeat_timeout_s):
                    pong = _pong_decoder.decode(await self._call("ping", None))
            except trio.TooSlowError:
                raise _LinkLost(
                    f"no heartbeat from {self.endpoint} for {self.config.heartbeat_timeout_s} s"
                ) from None
            last_pong_at = trio.current_time()
            self._on_pong(pong, rtt_ms=(last_pong_at - sent_at) * 1000)
            await trio.sleep_until(sent_at + self.config.heartbeat_interval_s)

    def _on_pong(self, pong: PongResult, rtt_ms: float) -> None:
        snap = self.snapshot
        status = LinkStatus.BUSY if pong.main_thread.busy else LinkStatus.CONNECTED
        changed = status is not snap.status
        snap.status = status
        snap.busy_for_ms = pong.main_thread.busy_for_ms
        snap.queue_depth = pong.main_thread.queue_depth
        snap.last_heartbeat = time.time()
        if changed:
            log.info(
                "link_status",
                endpoint=self.endpoint,
                status=status.value,
                busy_for_ms=snap.busy_for_ms,
                queue_depth=snap.queue_depth,
            )
        self._notify()

    # --- requests -------------------------------------------------------------------

    async def attach(self, session_id: str | None, name: str | None = None) -> None:
        """Tell the addon which session it serves, or none (remembered across reconnects)."""
        self.attached = AttachSessionParams(session_id=session_id, name=name)
        if self.connected:
            await self._call("attach_session", self.attached)

    async def request(self, type: str, params: bytes | None = None) -> bytes:
        """Send a command and return its result's JSON bytes.

        Raises RemoteProtocolError: the addon's own error code when Blender refused
        or failed the command; `blender_unavailable` when no Blender is connected or
        the connection dropped before the answer; `timeout` after request_timeout_s.
        """
        if not self.connected:
            raise self.unavailable_error()
        return await self._call(type, params)

    def submit(self, type: str, params: bytes, deliver: Deliver) -> None:
        """Send a command without waiting: `deliver(outcome)` is called exactly once,
        from the link's reader task (or at once when the connection is lost), and must
        not block or raise. `result_of` turns the outcome into bytes or an error.

        Raises RemoteProtocolError(blender_unavailable) when no Blender is connected.
        """
        if not self.connected:
            raise self.unavailable_error()
        self._send(type, params, deliver)

    def result_of(self, type: str, outcome: Outcome) -> bytes:
        """The result bytes of a successful outcome; raises RemoteProtocolError otherwise."""
        match outcome:
            case LinkSuccess(result=result):
                return bytes(result)
            case LinkFailure(code=code, message=message):
                raise RemoteProtocolError(_known_code(code), message)
            case "timed_out":
                raise RemoteProtocolError(
                    ErrorCode.TIMEOUT,
                    f"Blender at {self.endpoint} did not answer {type!r} within "
                    f"{self.config.request_timeout_s} s (main thread busy for "
                    f"{self.snapshot.busy_for_ms:.0f} ms); it may still run it",
                )
            case _:
                raise self.unavailable_error(lost=True)

    def _send(self, type: str, params: msgspec.Struct | bytes | None, deliver: Deliver) -> int:
        conn = self._conn
        if conn is None:
            raise self.unavailable_error()
        body = _encoder.encode(params) if isinstance(params, msgspec.Struct) else params
        request_id, data = conn.send_request(type, body)
        deadline = trio.current_time() + self.config.request_timeout_s
        self._pending[request_id] = _Pending(type, deliver, deadline)
        self._pending_added.set()
        self._outgoing += data
        self._outgoing_ready.set()
        return request_id

    async def _call(self, type: str, params: msgspec.Struct | bytes | None) -> bytes:
        """Send and wait for the result. A caller cancelled while waiting (its own
        deadline) withdraws the request, so a late answer is dropped."""
        done = trio.Event()
        box: list[Outcome] = []

        def deliver(outcome: Outcome) -> None:
            box.append(outcome)
            done.set()

        request_id = self._send(type, params, deliver)
        try:
            await done.wait()
        finally:
            if not box and self._pending.pop(request_id, None) is not None and self._conn:
                self._conn.forget(request_id)
        return self.result_of(type, box[0])

    def unavailable_error(self, *, lost: bool = False) -> RemoteProtocolError:
        if lost:
            message = (
                f"the connection to Blender at {self.endpoint} was lost before it "
                "answered; the command may or may not have run"
            )
        else:
            reason = f" ({self.snapshot.last_error})" if self.snapshot.last_error else ""
            message = (
                f"no Blender connected at {self.endpoint}{reason}; start one with "
                "the addon (run: blender-session blender)"
            )
        return RemoteProtocolError(ErrorCode.BLENDER_UNAVAILABLE, message)


def _leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def _first_message(group: BaseExceptionGroup[BaseException]) -> str:
    leaf = _leaf(group)
    return str(leaf) or type(leaf).__name__


def _found_in(group: BaseExceptionGroup[BaseException]) -> str:
    leaf = _leaf(group)
    return leaf.found if isinstance(leaf, _ForeignPeer) else ""


def _known_code(code: str) -> ErrorCode:
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.INTERNAL


def _deliver(pending: _Pending, outcome: Outcome) -> None:
    """Hand an outcome to its sender; a sender's bug must not take the link down."""
    try:
        pending.deliver(outcome)
    except Exception as error:
        log.exception("delivery_failed", type=pending.type, error=repr(error))
