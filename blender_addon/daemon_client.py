"""A tiny blocking client for the daemon's control port, for the sidebar panel's
buttons. Standard library only. Call it from a worker thread, never from Blender's
main thread: closing a session makes the daemon ask this Blender for a snapshot,
which needs the main thread free.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from pathlib import Path

from .vocabulary import JSONObject

APP_NAME = "blender-scene-sessions"
ENV_DATA_DIR = "BLENDER_SESSIOND_DATA_DIR"
TIMEOUT_S = 120.0


class DaemonError(Exception):
    pass


def default_data_dir() -> Path:
    """The daemon's default data dir (what platformdirs.user_data_dir gives it)."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR])
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", str(Path.home() / "AppData" / "Local"))
        return Path(base) / APP_NAME / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_NAME


def call(op: str, params: JSONObject | None = None, data_dir: Path | None = None) -> JSONObject:
    """Send one op and return its result. Raises DaemonError with a readable reason."""
    directory = data_dir or default_data_dir()
    try:
        endpoint = json.loads((directory / "control.json").read_text())
        token = (directory / "control.token").read_text().strip()
    except (OSError, ValueError):
        raise DaemonError(
            f"no daemon running for data dir {directory} (start it with: blender-sessiond)"
        ) from None
    request = {  # the token first: the daemon takes a long first line only then
        "token": token,
        "id": 1,
        "op": op,
        "params": params or {},
        "client_id": "blender-addon-" + uuid.uuid4().hex[:8],
    }
    try:
        with socket.create_connection(
            (endpoint["host"], endpoint["port"]), timeout=TIMEOUT_S
        ) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = sock.makefile("rb").readline()
    except OSError as error:
        raise DaemonError(
            f"cannot reach the daemon at {endpoint['host']}:{endpoint['port']}: {error}"
        ) from None
    try:
        decoded = json.loads(reply)
    except ValueError:
        raise DaemonError("the daemon closed the connection without an answer") from None
    if not decoded.get("ok"):
        failure = decoded.get("error") or {}
        raise DaemonError(f"{failure.get('code', 'error')}: {failure.get('message', '')}")
    return decoded.get("result") or {}
