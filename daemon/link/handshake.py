"""The link's opening exchange: `hello`, the attached session, the event subscription;
and, when nothing sensible answers, naming what is on the port instead."""

from __future__ import annotations

import msgspec
import trio

from ..protocol import DECODE_ERRORS, NoAnswer, Outcome, UnreadableReply
from ..protocol.identify import (
    CLOSES_EACH_REQUEST,
    LENGTH_PREFIXED_PROBE,
    SILENT,
    identify_length_reply,
)
from ..protocol.messages import (
    AttachSessionParams,
    DaemonEndpointParams,
    HelloParams,
    HelloResult,
    LinkFailure,
    LinkSuccess,
    SubscribeParams,
)
from .channel import RECEIVE_CHUNK_BYTES, Channel, Connect, ForeignPeer, LinkLost

_hello_decoder = msgspec.json.Decoder(HelloResult)


async def handshake(
    channel: Channel,
    attached: AttachSessionParams,
    timeout_s: float,
    connect: Connect,
    data_dir: str | None = None,
) -> HelloResult:
    """Say hello, re-attach the session, subscribe to scene events. Raises LinkLost
    (ForeignPeer when what answers is not this project's addon)."""
    try:
        with trio.fail_after(timeout_s):
            raw = _result(channel.endpoint, "hello", await channel.call(
                "hello", HelloParams(client="blender-sessiond")
            ))  # fmt: skip
            hello = _hello_decoder.decode(raw)
            if attached.session_id is not None:
                _result(channel.endpoint, "attach_session", await channel.call(
                    "attach_session", attached
                ))  # fmt: skip
            _result(channel.endpoint, "subscribe", await channel.call(
                "subscribe", SubscribeParams(events=["scene_changed", "scene_edited"])
            ))  # fmt: skip
            if data_dir is not None:  # for its panel; an older addon may not know it
                await channel.call("daemon_endpoint", DaemonEndpointParams(data_dir=data_dir))
    except trio.TooSlowError:
        # Silence: a length-prefixed blender-mcp waits for 2 GB after our "{"... ask it
        # in its own framing on a second connection.
        found = await probe_length_prefixed(channel.endpoint, timeout_s, connect)
        raise ForeignPeer(found, channel.endpoint) from None
    except DECODE_ERRORS as error:
        raise LinkLost(f"{channel.endpoint} answered hello with something else: {error}") from None
    return hello


def _result(endpoint: str, type: str, outcome: Outcome) -> bytes:
    match outcome:
        case LinkSuccess(result=result):
            return bytes(result)
        case LinkFailure(code=code, message=message):
            raise LinkLost(f"{endpoint} refused {type!r}: {code}: {message}")
        case UnreadableReply(reason=reason):
            raise LinkLost(f"{endpoint} answered {type!r} unreadably: {reason}")
        case NoAnswer():
            raise LinkLost(f"{endpoint} did not answer {type!r} ({outcome.value})")


async def probe_length_prefixed(endpoint: str, timeout_s: float, connect: Connect) -> str:
    host, _, port = endpoint.rpartition(":")
    received = b""
    with trio.move_on_after(timeout_s):
        stream = await connect(host, int(port))
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
