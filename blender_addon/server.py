"""The addon's socket server: accept and read on I/O threads, never touching bpy.

`hello`, `ping`, `attach_session` and `subscribe` are answered here on the I/O side,
so a heartbeat gets its pong while the main thread is busy. Every other request
becomes a job on the MainThreadQueue; its reply goes back through the connection's
writer thread, so the main thread never blocks on a slow client.

Standard library only; no bpy in this module.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from . import blender_mcp
from . import params as checked_params
from .connection import Connection, error_reply, ok_reply
from .framing import DEFAULT_MAX_FRAME_BYTES
from .mainthread import MainThreadQueue
from .vocabulary import (
    COMMAND_NAMES,
    IO_TYPES,
    MAX_SESSION_NAME_CHARS,
    SESSION_ID_PATTERN,
    JSONObject,
)

PROTOCOL_VERSION = 1
# scene_changed: the scene changed (coalesced; names only). scene_edited: a change
# made beside the subscriber (another client, the GUI), with object records (edits.py).
KNOWN_EVENTS = frozenset({"scene_changed", "scene_edited"})
MAX_PATH_CHARS = 4096
_SESSION_ID = re.compile(SESSION_ID_PATTERN, re.ASCII)


def instance_id() -> str:
    """New each time Blender starts; the same across the addon's reloads within one
    Blender (kept on a module of its own in sys.modules), so the daemon can tell a
    restarted Blender from the same one reconnecting."""
    holder = sys.modules.setdefault("_bss_instance", types.ModuleType("_bss_instance"))
    return str(holder.__dict__.setdefault("value", uuid.uuid4().hex))


class CommandError(Exception):
    """A command's refusal or failure, with a PROTOCOL.md §1 error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 9876
    allow_remote: bool = False
    allow_execute_code: bool = False
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES


@dataclass
class SceneFacts:
    """What `hello` reports about Blender, refreshed by the main thread."""

    blender_version: str = ""
    file: str = ""
    scene: str = ""
    addon_version: str = ""
    commands: list[str] = field(default_factory=list)


# Runs a scene command on the main thread: (type, params) -> result, or raises.
# (type, params, by_watcher): by_watcher is True for a command from a connection
# subscribed to scene_edited (the daemon): the others' are edits beside it.
Dispatch = Callable[[str, JSONObject, bool], object]


class AddonServer:
    def __init__(
        self,
        settings: ServerSettings,
        main_queue: MainThreadQueue,
        dispatch: Dispatch,
        facts: SceneFacts,
    ) -> None:
        self.settings = settings
        self.main_queue = main_queue
        self.dispatch = dispatch
        self.facts = facts
        self.session_id: str | None = None
        self.session_name: str | None = None
        self.daemon_data_dir: str | None = None  # told by the daemon (daemon_endpoint)
        self.command_count = 0
        self.started_at: float | None = None
        self.last_ping_at: float | None = None
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1] if self._listener else self.settings.port

    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> int:
        """Bind and start the accept thread. Returns the bound port. Raises OSError."""
        if self._listener is not None:
            return self.port
        host = self.settings.host
        if not self.settings.allow_remote and not _is_loopback(host):
            raise OSError(
                f"refusing to listen on {host!r}: not loopback; turn on 'Allow remote "
                "peers' in the addon preferences (or --allow-remote) to do that"
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, self.settings.port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.2)  # lets the accept loop notice stop()
        self._listener = listener
        self._stopping.clear()
        self.started_at = time.time()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="bss-accept", daemon=True
        )
        self._accept_thread.start()
        return self.port

    def stop(self, join_timeout_s: float = 2.0) -> None:
        """Close the listener and every connection; join the accept thread (bounded)."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close()
        if self._accept_thread is not None:
            self._accept_thread.join(join_timeout_s)
            self._accept_thread = None

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                sock, address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = address[0]
            conn = Connection(self, sock, peer, self.settings.max_frame_bytes)
            if not self.settings.allow_remote and not _is_loopback(peer):
                conn.send(
                    error_reply(
                        "forbidden",
                        f"remote peer {peer} refused: the addon accepts loopback connections only",
                    ),
                    None,
                    None,
                )
                conn.finish_writing()
                threading.Thread(target=conn.write_loop, daemon=True).start()
                continue
            with self._lock:
                self._connections.add(conn)
            threading.Thread(target=conn.read_loop, name=f"bss-read-{peer}", daemon=True).start()
            threading.Thread(target=conn.write_loop, name=f"bss-write-{peer}", daemon=True).start()

    def forget(self, conn: Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    # --- requests -------------------------------------------------------------------

    def handle_request(self, conn: Connection, request: JSONObject) -> None:
        """Runs on: the connection's reader thread."""
        request_id = request.get("id")
        slot = conn.ordered.reserve() if "id" not in request else None
        if request_id is not None and (
            isinstance(request_id, bool) or not isinstance(request_id, (int, str))
        ):
            conn.send(
                error_reply("bad_request", f"id must be an int or a string, got {request_id!r}"),
                None,
                slot,
            )
            return
        kind = request.get("type")
        if not isinstance(kind, str) or not kind:
            conn.send(error_reply("bad_request", 'request has no "type" string'), request, slot)
            return
        params = request.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            conn.send(
                error_reply("invalid_params", f"params of {kind!r} must be an object"),
                request,
                slot,
            )
            return
        if kind in IO_TYPES:
            conn.send(self._answer_io(conn, kind, params), request, slot)
            return
        if kind in blender_mcp.PROBES:
            answer = blender_mcp.answer_probe(kind, self.facts.blender_version)
            conn.send(ok_reply(answer), request, slot)
            return
        if kind not in COMMAND_NAMES:
            # A request without an id is a blender-mcp client's: its wording, which
            # that client recognises; ours (with the known commands) for the others.
            message = (
                blender_mcp.unknown_command(kind)
                if "id" not in request
                else f"unknown command {kind!r}; known: {', '.join(sorted(COMMAND_NAMES))}"
            )
            conn.send(error_reply("unknown_command", message), request, slot)
            return
        try:
            params = checked_params.check(kind, params)
        except checked_params.ParamsError as error:
            conn.send(error_reply("invalid_params", str(error)), request, slot)
            return
        conn.acquire_slot_in_flight()
        conn.request_read()
        self.main_queue.submit(lambda: self._run_on_main(conn, kind, params, request, slot))

    def _run_on_main(
        self, conn: Connection, kind: str, params: JSONObject, request: JSONObject, slot: int | None
    ) -> None:
        """Runs on: main thread. Never raises: every outcome becomes a reply."""
        try:
            if conn.closed.is_set():
                return  # the client is gone (its socket failed) before its turn; skip the work
            try:
                result = self.dispatch(kind, params, "scene_edited" in conn.subscribed)
                reply = {"status": "success", "result": result}
                self.command_count += 1
            except CommandError as error:
                reply = error_reply(error.code, error.message)
            except Exception as error:  # a bug or a bpy failure: report, keep serving
                traceback.print_exc()
                reply = error_reply("internal", f"{kind} failed inside Blender: {error!r}")
            conn.send(reply, request, slot)
        finally:
            conn.release_slot_in_flight()
            conn.request_answered()

    def _answer_io(self, conn: Connection, kind: str, params: JSONObject) -> JSONObject:
        """Runs on: an I/O thread. Never waits for the main thread."""
        if kind == "ping":
            self.last_ping_at = time.time()
            busy, busy_for_ms, depth = self.main_queue.status()
            return ok_reply(
                {
                    "pong": True,
                    "session_id": self.session_id,
                    "instance_id": instance_id(),
                    "main_thread": {"busy": busy, "busy_for_ms": busy_for_ms, "queue_depth": depth},
                }
            )
        if kind == "hello":
            facts = self.facts
            return ok_reply(
                {
                    "protocol": PROTOCOL_VERSION,
                    "addon_version": facts.addon_version,
                    "blender_version": facts.blender_version,
                    "file": facts.file,
                    "scene": facts.scene,
                    "commands": list(facts.commands),
                    "session_id": self.session_id,
                    "execute_code_enabled": self.settings.allow_execute_code,
                    "instance_id": instance_id(),
                }
            )
        if kind == "attach_session":
            # Whatever is kept here is echoed in every hello and ping: only a real
            # session id and a printable name, so the daemon can always read them back.
            session_id = params.get("session_id")
            if session_id is not None and (
                not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id)
            ):
                return error_reply(
                    "invalid_params",
                    "attach_session needs a session id like scene-YYYYMMDD-HHMMSS-xxxxxxxx "
                    "(or null to detach)",
                )
            name = params.get("name")
            if name is not None:
                try:
                    name = checked_params.text(name, "name", max_chars=MAX_SESSION_NAME_CHARS)
                except checked_params.ParamsError as error:
                    return error_reply("invalid_params", str(error))
                if not name.isprintable():
                    return error_reply("invalid_params", "'name' must be printable")
            self.session_id = session_id
            self.session_name = name
            return ok_reply({})
        if kind == "daemon_endpoint":
            # Where the daemon linked to this Blender keeps its control port and token,
            # for the panel's buttons (any --data-dir). Only a plain absolute path.
            data_dir = params.get("data_dir")
            if (
                not isinstance(data_dir, str)
                or not os.path.isabs(data_dir)
                or len(data_dir) > MAX_PATH_CHARS
                or not data_dir.isprintable()
            ):
                return error_reply(
                    "invalid_params", "daemon_endpoint needs data_dir: an absolute path"
                )
            self.daemon_data_dir = data_dir
            return ok_reply({})
        events = params.get("events", sorted(KNOWN_EVENTS))
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            return error_reply("invalid_params", "subscribe needs events: a list of strings")
        unknown = sorted(set(events) - KNOWN_EVENTS)
        if unknown:
            return error_reply(
                "invalid_params", f"unknown events {unknown}; known: {sorted(KNOWN_EVENTS)}"
            )
        conn.subscribed = set(events)
        return ok_reply({})

    def has_subscribers(self, name: str) -> bool:
        with self._lock:
            return any(name in c.subscribed for c in self._connections)

    def publish(self, name: str, data: JSONObject) -> None:
        """Send an event to every connection subscribed to it. Runs on: any thread."""
        with self._lock:
            targets = [c for c in self._connections if name in c.subscribed]
        for conn in targets:
            conn.send_event(name, data)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))
