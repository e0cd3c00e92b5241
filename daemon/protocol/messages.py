"""msgspec Structs for the envelopes of PROTOCOL.md §1 (addon link) and §2 (control),
and the link's handshake. Scene commands' params and results are in `scene.py`, the
control ops' in `ops.py`.

Peers may add fields (the protocol grows additively), so unknown fields are ignored
in what they send; params are the exception (`Params`: an unknown key is an error).
Opaque payloads stay `msgspec.Raw` until the code that understands them decodes them.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Raw, Struct

RequestId = int | str
EMPTY_OBJECT = Raw(b"{}")
NULL = Raw(b"null")


class Message(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base for wire messages: immutable, keyword-only, defaults left off the wire."""


class Params(Message, forbid_unknown_fields=True, frozen=True):
    """Base for the params of a command or op: an unknown key is `invalid_params`."""


class NoParams(Params, frozen=True):
    pass


# --- §1 addon link: envelopes --------------------------------------------------------


class LinkRequest(Message, frozen=True):
    type: str
    id: RequestId | None = None
    params: Raw = EMPTY_OBJECT


class LinkSuccess(Message, tag_field="status", tag="success", frozen=True):
    result: Raw
    id: RequestId | None = None


class LinkFailure(Message, tag_field="status", tag="error", frozen=True):
    code: str = "internal"
    message: str = ""
    id: RequestId | None = None


LinkResponse = LinkSuccess | LinkFailure


class LinkEvent(Message, frozen=True):
    event: str
    seq: int
    data: Raw = EMPTY_OBJECT


# --- §1 addon link: handshake and liveness -------------------------------------------


class HelloParams(Message, frozen=True):
    client: str
    protocol: int = 1


class HelloResult(Message, frozen=True):
    """The addon's `hello`. The session id it echoes is not read back: the daemon
    knows which session it attached."""

    protocol: int
    addon_version: str
    blender_version: str
    file: str
    scene: str
    commands: list[str]
    execute_code_enabled: bool = False
    # New each time Blender starts (PROTOCOL.md §4): a different one under an open
    # session means Blender restarted and its scene is not the session's any more.
    instance_id: str = ""


class MainThreadStatus(Message, frozen=True):
    busy: bool
    busy_for_ms: float
    queue_depth: int


class PongResult(Message, frozen=True):
    pong: bool
    main_thread: MainThreadStatus


class AttachSessionParams(Message, frozen=True):
    session_id: str | None  # None: no session is attached any more
    name: str | None = None


class SubscribeParams(Message, frozen=True):
    events: list[str] = []


class DaemonEndpointParams(Message, frozen=True):
    """Where the addon's panel finds the daemon that links to it: its data dir (the
    control port and token are in files there)."""

    data_dir: str


# --- §2 control protocol -------------------------------------------------------------


class ControlRequest(Message, frozen=True, kw_only=True):
    """A control request. The token comes first on the wire (fields encode in this
    order): a line longer than the pre-authentication limit is taken only when it
    starts with the right token (protocol/control.py)."""

    token: str | None = None
    op: str
    id: RequestId | None = None
    params: Raw = EMPTY_OBJECT
    client_id: str | None = None


class ErrorBody(Message, frozen=True):
    code: str
    message: str


class ControlReply(Struct, frozen=True, kw_only=True):
    """Base for control replies: every field is always on the wire (`ok` included)."""


class ControlOk(ControlReply, kw_only=True, frozen=True):
    id: RequestId | None
    ok: Literal[True] = True
    result: Raw


class ControlFailure(ControlReply, kw_only=True, frozen=True):
    id: RequestId | None
    ok: Literal[False] = False
    error: ErrorBody


class ControlResponse(Message, frozen=True):
    """What a client decodes: either shape of the server's reply, or a watch event
    (then `event` is set and `ok` is None)."""

    ok: bool | None = None
    id: RequestId | None = None
    result: Raw = NULL
    error: ErrorBody | None = None
    event: str | None = None
    data: Raw = NULL


class ControlEvent(Message, frozen=True):
    """A `watch` stream item: `{"id": <the watch request's id>, "event": ..., "data": ...}`."""

    event: str
    id: RequestId | None = None
    data: Raw = EMPTY_OBJECT


def encode_json(value: object) -> bytes:
    return _encoder.encode(value)


_encoder = msgspec.json.Encoder()
