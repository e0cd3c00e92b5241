"""What the daemon knows about one Blender link: its settings, its status, and the
facts the addon reported (for records, `status` and the sessions bound to it)."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from enum import StrEnum

from ..config import (
    DEFAULT_ADDON_HOST,
    DEFAULT_ADDON_PORT,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_HEARTBEAT_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
)


class LinkStatus(StrEnum):
    CONNECTING = "connecting"  # never connected yet, or reconnecting
    CONNECTED = "connected"  # pongs arrive, main thread free
    BUSY = "busy"  # pongs arrive, Blender's main thread is busy (render, heavy op)
    # The socket closed, or no pong came within the heartbeat timeout (a frozen or
    # stopped Blender: the connection is kept, so answers that come later are recorded).
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class LinkConfig:
    host: str = DEFAULT_ADDON_HOST
    port: int = DEFAULT_ADDON_PORT
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 5.0
    # While Blender cannot be reached, say so in the log at most this often.
    unreachable_log_interval_s: float = 60.0
    # Told to the addon, so its panel's buttons find this daemon (any --data-dir).
    daemon_data_dir: str | None = None


PONG_SAMPLES = 512


@dataclass(slots=True)
class LinkSnapshot:
    """What the daemon knows about the Blender at the other end."""

    status: LinkStatus = LinkStatus.CONNECTING
    blender_version: str = ""
    file: str = ""
    scene: str = ""
    addon_version: str = ""
    instance_id: str = ""  # new each Blender start; "" until the first hello
    commands: list[str] = field(default_factory=list)
    execute_code_enabled: bool = False
    last_heartbeat: float | None = None  # wall clock, for records
    busy_for_ms: float = 0.0
    queue_depth: int = 0
    last_error: str = ""
    reconnects: int = 0
    found: str = ""  # what answered instead of this project's addon, when not ours
    # The heartbeat's last round trips (ms): what a stalled event loop shows first.
    pong_rtts: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=PONG_SAMPLES)
    )
