"""The daemon's trio client for the Blender addon.

- `supervisor`: `AddonLink`, one per Blender: reconnects, status, the request API.
- `channel`: one connection: reader, the only writer, request expiry, late answers.
- `handshake`, `heartbeat`: the opening exchange; liveness.
- `status`: settings, status and what the addon reported.
"""

from .channel import Answer, Deliver, OnLate
from .status import LinkConfig, LinkSnapshot, LinkStatus
from .supervisor import AddonLink, LinkObserver

__all__ = [
    "AddonLink",
    "Answer",
    "Deliver",
    "LinkConfig",
    "LinkObserver",
    "LinkSnapshot",
    "LinkStatus",
    "OnLate",
]
