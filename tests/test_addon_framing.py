"""The addon's sans-I/O framing and its I/O-side helpers, in plain Python (no bpy):
three framings detected from the first bytes, any split gives the same frames, and
no input makes it raise anything but FrameError."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blender_addon.connection import _OrderedReplies
from blender_addon.framing import JSON_TEXT, LENGTH_PREFIXED, FrameDecoder, FrameError
from blender_addon.server import _is_loopback

from .addon_client import BARE, LENGTH, NDJSON, frame

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
requests = st.dictionaries(st.text(max_size=6), json_values, max_size=4).map(
    lambda params: {"type": "x", "params": params}
)


def encode(message: dict, framing: str) -> bytes:
    body = json.dumps(message).encode()
    if framing == "length":
        return struct.pack(">I", len(body)) + body
    return body + (b"\n" if framing == "ndjson" else b"")


def frames_of(data: bytes, cuts: list[int]) -> list[object]:
    decoder = FrameDecoder()
    out: list[object] = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        decoder.feed(data[start:end])
        while (frame := decoder.next_frame()) is not None:
            out.append(frame)
    return out


@pytest.mark.parametrize("framing", ["ndjson", "bare", "length"])
def test_each_framing_whole_bytewise_and_with_extra_bytes(framing: str) -> None:
    messages = [{"type": "ping"}, {"type": "get_state", "params": {"s": '}{\\"]'}}]
    data = b"".join(encode(m, framing) for m in messages)
    assert frames_of(data, []) == messages
    assert frames_of(data, list(range(1, len(data)))) == messages
    extra = encode({"type": "tail"}, framing)[:5]
    assert frames_of(data + extra, []) == messages


@given(
    st.lists(requests, min_size=1, max_size=5),
    st.sampled_from(["ndjson", "bare", "length"]),
    st.data(),
)
def test_any_split_gives_the_same_frames(
    messages: list[dict], framing: str, data: st.DataObject
) -> None:
    stream = b"".join(encode(m, framing) for m in messages)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=8))))
    assert frames_of(stream, cuts) == messages


@settings(max_examples=500)
@given(st.binary(max_size=400), st.integers(1, 60))
def test_garbage_raises_only_frame_errors(garbage: bytes, chunk: int) -> None:
    decoder = FrameDecoder(max_frame_bytes=300)
    try:
        for start in range(0, len(garbage), chunk):
            decoder.feed(garbage[start : start + chunk])
            while (frame := decoder.next_frame()) is not None:
                assert isinstance(frame, dict | FrameError)
    except FrameError as error:
        assert error.framing_lost and error.code == "bad_request"


@pytest.mark.parametrize("framing", [NDJSON, BARE, LENGTH])
def test_json_nested_too_deeply_is_a_bad_request_not_a_crash(framing: str) -> None:
    """The stdlib parser raises RecursionError (not ValueError) on deep nesting, which
    used to kill the connection's reader thread without an answer."""
    decoder = FrameDecoder()
    deep = b'{"id": 1, "params": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    decoder.feed(frame(deep, framing))
    error = decoder.next_frame()
    assert isinstance(error, FrameError) and "nested too deeply" in error.message
    decoder.feed(frame({"type": "ping"}, framing))
    assert decoder.next_frame() == {"type": "ping"}


def test_framing_is_detected_from_the_first_byte() -> None:
    for first, framing in (
        (b"{", JSON_TEXT),
        (b"  \n{", JSON_TEXT),
        (b"\x00", LENGTH_PREFIXED),
        (b"\x01", LENGTH_PREFIXED),
        (b"\xff", LENGTH_PREFIXED),
    ):
        decoder = FrameDecoder()
        decoder.feed(first)
        decoder.next_frame()
        assert decoder.framing == framing


def test_replies_use_the_client_framing() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00\x00\x02{}")
    assert decoder.next_frame() == {}
    assert decoder.encode({"a": 1}) == b'\x00\x00\x00\x07{"a":1}'
    text = FrameDecoder()
    text.feed(b"{}")
    text.next_frame()
    assert text.encode({"a": 1}) == b'{"a":1}\n'


def test_malformed_ndjson_line_is_skipped_and_the_next_parses() -> None:
    decoder = FrameDecoder()
    decoder.feed(b'{"type": bad}\nnot json at all\n{"type": "ok"}\n')
    first, second, third = decoder.next_frame(), decoder.next_frame(), decoder.next_frame()
    assert isinstance(first, FrameError) and isinstance(second, FrameError)
    assert third == {"type": "ok"}


def test_oversized_length_prefix_loses_framing_for_good() -> None:
    decoder = FrameDecoder(max_frame_bytes=100)
    decoder.feed(struct.pack(">I", 101))
    with pytest.raises(FrameError) as caught:
        decoder.next_frame()
    assert caught.value.framing_lost
    with pytest.raises(FrameError):
        decoder.next_frame()


def test_unclosed_object_over_the_limit_loses_framing_before_it_ends() -> None:
    decoder = FrameDecoder(max_frame_bytes=100)
    decoder.feed(b'{"pad": "' + b"x" * 200)
    with pytest.raises(FrameError) as caught:
        decoder.next_frame()
    assert caught.value.framing_lost


def test_ordered_replies_wait_for_earlier_slots() -> None:
    ordered = _OrderedReplies()
    slots = [ordered.reserve() for _ in range(3)]
    assert ordered.complete(slots[2], b"c") == []
    assert ordered.complete(slots[1], b"b") == []
    assert ordered.complete(slots[0], b"a") == [b"a", b"b", b"c"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("::", False),
        ("example.com", False),
        ("192.168.1.5", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert _is_loopback(host) is loopback


def test_server_refuses_non_loopback_bind_without_the_preference() -> None:
    from blender_addon.mainthread import MainThreadQueue
    from blender_addon.server import AddonServer, SceneFacts, ServerSettings

    server = AddonServer(
        ServerSettings(host="0.0.0.0", port=0),
        MainThreadQueue(),
        lambda kind, params, by_watcher: {},
        SceneFacts(),
    )
    with pytest.raises(OSError, match="not loopback"):
        server.start()
    assert not server.running
