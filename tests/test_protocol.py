"""The sans-I/O protocol core: framing, the link and control connections, with
bytes in and events out, no sockets. Every input is fed whole, a byte at a time,
and followed by extra bytes; hypothesis generalises that to any split.

Long because each protocol rule is a short test beside the others.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.protocol import (
    NEED_DATA,
    BadMessage,
    ConnectionClosed,
    ConnectionState,
    ControlClientConnection,
    ControlServerConnection,
    ErrorCode,
    EventReceived,
    LineBuffer,
    LinkConnection,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RequestReceived,
    ResponseReceived,
    UnreadableReply,
)
from daemon.protocol.commands import COMMANDS, check_command
from daemon.protocol.json_checks import check_json
from daemon.protocol.limits import MAX_JSON_DEPTH, PRE_AUTH_FRAME_BYTES
from daemon.protocol.link import MAX_LATE_REQUESTS
from daemon.protocol.messages import LinkFailure, LinkSuccess
from daemon.protocol.scene import ObjectRecord, SceneState


def feed_all(buffer: LineBuffer, data: bytes, chunk: int | None) -> list[bytes]:
    lines = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        buffer.feed(piece)
        while (line := buffer.maybe_extract_line()) is not None:
            lines.append(line)
    return lines


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_line_buffer_same_lines_whatever_the_split(chunk: int | None) -> None:
    data = b'{"a": 1}\n\n{"b": "x\\ny"}\n'
    assert feed_all(LineBuffer(), data, chunk) == [b'{"a": 1}', b"", b'{"b": "x\\ny"}']


def test_line_buffer_keeps_extra_bytes_for_the_next_line() -> None:
    buffer = LineBuffer()
    assert feed_all(buffer, b'{"a": 1}\n{"b"', None) == [b'{"a": 1}']
    assert buffer.unterminated_tail() == b'{"b"'
    assert feed_all(buffer, b": 2}\n", None) == [b'{"b": 2}']


def test_line_buffer_refuses_oversized_frame_before_its_newline() -> None:
    buffer = LineBuffer(max_frame_bytes=1000)
    buffer.feed(b"x" * 1001)  # no newline yet: the limit applies anyway
    with pytest.raises(RemoteProtocolError) as caught:
        buffer.maybe_extract_line()
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert caught.value.framing_lost


def test_line_buffer_accepts_frame_exactly_at_the_limit() -> None:
    buffer = LineBuffer(max_frame_bytes=1000)
    buffer.feed(b"y" * 1000 + b"\n")
    assert buffer.maybe_extract_line() == b"y" * 1000


def test_line_buffer_large_frame_in_small_pieces_is_searched_once() -> None:
    """The search offset advances, so 4 KiB pieces of a 4 MiB frame do not rescan."""
    buffer = LineBuffer()
    piece = b"z" * 4096
    for _ in range(1024):
        buffer.feed(piece)
        assert buffer.maybe_extract_line() is None
        assert buffer._searched_to == len(buffer._data)  # nothing left unsearched
    buffer.feed(b"\n")
    assert len(buffer.maybe_extract_line() or b"") == 4096 * 1024


def test_protocol_error_base_cannot_be_raised_directly() -> None:
    with pytest.raises(TypeError):
        ProtocolError(ErrorCode.INTERNAL, "x")


# --- link connection ----------------------------------------------------------------


def test_link_pairs_responses_with_pending_requests() -> None:
    conn = LinkConnection()
    first, data = conn.send_request("get_state", None, "first-waiter")
    second, _ = conn.send_request("ping", None, "second-waiter")
    assert data == b'{"type":"get_state","id":1}\n'  # empty params are left off
    assert {k: (v.type, v.context) for k, v in conn.pending_requests.items()} == {
        first: ("get_state", "first-waiter"),
        second: ("ping", "second-waiter"),
    }
    conn.receive_data(
        b'{"id": 2, "status": "success", "result": {"pong": true}}\n'
        b'{"id": 1, "status": "error", "code": "busy_timeout", "message": "m"}\n'
    )
    reply_two, reply_one = conn.next_event(), conn.next_event()
    assert isinstance(reply_two, ResponseReceived) and reply_two.pending is not None
    assert reply_two.pending.context == "second-waiter"
    assert isinstance(reply_two.response, LinkSuccess)
    assert isinstance(reply_one, ResponseReceived) and isinstance(reply_one.response, LinkFailure)
    assert reply_one.response.code == "busy_timeout"
    assert conn.next_event() is NEED_DATA
    assert conn.pending_requests == {}


def test_link_response_after_forget_is_paired_with_nobody() -> None:
    conn = LinkConnection()
    request_id, _ = conn.send_request("get_state")
    conn.forget(request_id)
    conn.receive_data(b'{"id": 1, "status": "success", "result": {}}\n')
    event = conn.next_event()
    assert isinstance(event, ResponseReceived) and event.pending is None


def test_link_response_after_expire_arrives_late_with_its_request() -> None:
    conn = LinkConnection()
    request_id, _ = conn.send_request("create_object", b"{}", "waiter")
    conn.expire(request_id)
    conn.receive_data(b'{"id": 1, "status": "success", "result": {"name": "Late"}}\n')
    event = conn.next_event()
    assert isinstance(event, ResponseReceived) and event.pending is not None
    assert event.pending.late and event.pending.context == "waiter"
    assert conn.pending_requests == {}


def test_link_keeps_a_bounded_number_of_late_requests() -> None:
    conn = LinkConnection()
    ids = [conn.send_request("get_state")[0] for _ in range(MAX_LATE_REQUESTS + 10)]
    for request_id in ids:
        conn.expire(request_id)
    assert len(conn.pending_requests) == MAX_LATE_REQUESTS
    assert ids[0] not in conn.pending_requests and ids[-1] in conn.pending_requests


@pytest.mark.parametrize(
    "reply",
    [
        b'{"id": 1, "status": "success", "result": {"session_id": "\\ud800"}}',
        b'{"id": 1, "status": "success", "result": {"x": NaN}}',
    ],
    ids=["lone-surrogate", "nan"],
)
def test_link_unreadable_reply_fails_its_request_and_the_link_goes_on(reply: bytes) -> None:
    conn = LinkConnection()
    conn.send_request("ping", None, "pinger")
    conn.send_request("get_state", None, "reader")
    conn.receive_data(reply + b'\n{"id": 2, "status": "success", "result": {}}\n')
    unreadable, fine = conn.next_event(), conn.next_event()
    assert isinstance(unreadable, ResponseReceived)
    assert isinstance(unreadable.response, UnreadableReply)
    assert unreadable.pending is not None and unreadable.pending.context == "pinger"
    assert isinstance(fine, ResponseReceived) and isinstance(fine.response, LinkSuccess)
    assert conn.state is ConnectionState.OPEN


def test_link_detects_event_seq_gap() -> None:
    conn = LinkConnection()
    conn.receive_data(
        b'{"event": "scene_changed", "seq": 1, "data": {}}\n'
        b'{"event": "scene_changed", "seq": 4, "data": {}}\n'
    )
    first, second = conn.next_event(), conn.next_event()
    assert isinstance(first, EventReceived) and first.missed == 0
    assert isinstance(second, EventReceived) and second.missed == 2


def test_link_eof_between_messages_is_a_clean_close() -> None:
    conn = LinkConnection()
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.state is ConnectionState.CLOSED


def test_link_garbage_puts_connection_in_error_for_good() -> None:
    conn = LinkConnection()
    conn.receive_data(b"HTTP/1.1 400 Bad Request\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is ConnectionState.ERROR
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send_request("ping")


# --- control connection -------------------------------------------------------------


def test_control_request_round_trip_between_client_and_server() -> None:
    client = ControlClientConnection(token="t0k", client_id="01J0000000000000000000000")
    server = ControlServerConnection()
    _, data = client.send_request("session.open", b'{"name": "demo"}')
    for byte in data:  # one byte at a time
        server.receive_data(bytes([byte]))
    event = server.next_event()
    assert isinstance(event, RequestReceived)
    assert event.request.op == "session.open" and event.request.token == "t0k"
    assert msgspec.json.decode(event.request.params) == {"name": "demo"}
    client.receive_data(server.send_result(event.request.id, b'{"session_id": "s"}'))
    reply = client.next_event()
    assert reply.ok is True and msgspec.json.decode(reply.result) == {"session_id": "s"}


@pytest.mark.parametrize(
    ("line", "expected_id"),
    [(b"not json", None), (b"[1, 2]", None), (b'{"id": 9, "op": 5}', 9), (b'{"id": 3}', 3)],
)
def test_control_bad_message_keeps_framing_and_carries_the_id(
    line: bytes, expected_id: object
) -> None:
    server = ControlServerConnection()
    server.receive_data(line + b'\n{"op": "status", "token": "t"}\n')
    bad = server.next_event()
    assert isinstance(bad, BadMessage) and bad.request_id == expected_id
    assert bad.error.code is ErrorCode.BAD_REQUEST
    assert isinstance(server.next_event(), RequestReceived)  # the next line still parses


def test_control_error_reply_shape() -> None:
    data = ControlServerConnection.send_error(
        4, RemoteProtocolError(ErrorCode.NOT_FOUND, "no session 'x'")
    )
    assert msgspec.json.decode(data) == {
        "id": 4,
        "ok": False,
        "error": {"code": "not_found", "message": "no session 'x'"},
    }


# --- properties ---------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
finite = st.floats(min_value=-(2.0**96), max_value=2.0**96, width=32)  # exact in float32, < 1e30
vec3 = st.tuples(finite, finite, finite)
names = st.text(min_size=1, max_size=20)
object_records = st.builds(
    ObjectRecord,
    name=names,
    type=st.sampled_from(["MESH", "EMPTY", "LIGHT"]),
    location=vec3,
    rotation=vec3,
    scale=vec3,
    parent=st.none() | names,
    materials=st.lists(names, max_size=3),
    visible=st.booleans(),
    data_kind=st.none() | st.sampled_from(["cube", "torus"]),
)
scene_states = st.builds(
    SceneState,
    scene=names,
    frame=st.integers(0, 10000),
    file=st.text(max_size=30),
    objects=st.lists(object_records, max_size=5),
    selection=st.lists(names, max_size=3),
    active=st.none() | names,
)


@given(scene_states)
def test_scene_state_survives_encode_decode(state: SceneState) -> None:
    assert msgspec.json.decode(msgspec.json.encode(state), type=SceneState) == state


@given(st.lists(st.tuples(st.sampled_from(sorted(COMMANDS)), json_values), max_size=8), st.data())
def test_link_any_split_of_the_stream_gives_the_same_events(
    requests: list[tuple[str, object]], data: st.DataObject
) -> None:
    sender = LinkConnection()
    stream = b"".join(
        sender.send_request(kind, msgspec.json.encode(params))[1] for kind, params in requests
    )
    # The same bytes, answered by an addon, split at arbitrary points.
    replies = b"".join(
        msgspec.json.encode({"id": i + 1, "status": "success", "result": params}) + b"\n"
        for i, (_, params) in enumerate(requests)
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(replies)), max_size=6)))
    receiver = LinkConnection()
    for _ in requests:
        receiver.send_request("x")
    events = []
    for start, end in zip([0, *cuts], [*cuts, len(replies)], strict=True):
        if start == end:
            continue  # b"" means EOF to receive_data
        receiver.receive_data(replies[start:end])
        while (event := receiver.next_event()) is not NEED_DATA:
            events.append(event)
    assert [e.request_id for e in events] == list(range(1, len(requests) + 1))
    assert [msgspec.json.decode(e.response.result) for e in events] == [p for _, p in requests]
    assert stream.count(b"\n") == len(requests)


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(1, 50))
def test_garbage_into_link_raises_only_protocol_errors(garbage: bytes, chunk: int) -> None:
    conn = LinkConnection(max_frame_bytes=256)
    try:
        for start in range(0, len(garbage), chunk):
            conn.receive_data(garbage[start : start + chunk])
            while conn.next_event() is not NEED_DATA:
                pass
        conn.receive_data(b"")
        conn.next_event()
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(1, 50))
def test_garbage_into_control_server_raises_only_protocol_errors(
    garbage: bytes, chunk: int
) -> None:
    conn = ControlServerConnection(max_frame_bytes=256)
    try:
        for start in range(0, len(garbage), chunk):
            conn.receive_data(garbage[start : start + chunk])
            while (event := conn.next_event()) is not NEED_DATA:
                assert isinstance(event, RequestReceived | BadMessage | ConnectionClosed)
                if isinstance(event, ConnectionClosed):
                    break
    except RemoteProtocolError as error:
        assert error.framing_lost


DEEP = 20_000  # deeper than msgspec's recursion limit


@pytest.mark.parametrize(
    "line",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"id": 3, "op": "status", "params": ' + b"[" * DEEP + b"\n",
        b'{"id": 3, "op": "status", "params": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    ],
    ids=["deep-array", "unclosed-deep-params", "closed-deep-params"],
)
def test_control_input_nested_too_deeply_is_a_bad_message(line: bytes) -> None:
    """msgspec raises RecursionError here, not DecodeError; the live fuzz campaign
    found it escaping and taking the control listener down."""
    conn = ControlServerConnection()
    conn.receive_data(line.rstrip(b"\n") + b"\n" + b'{"id": 4, "op": "status"}\n')
    bad = conn.next_event()
    assert isinstance(bad, BadMessage) and bad.error.code is ErrorCode.BAD_REQUEST
    following = conn.next_event()
    assert isinstance(following, RequestReceived) and following.request.id == 4


def test_link_response_nested_too_deeply_is_a_protocol_error() -> None:
    conn = LinkConnection()
    request_id, _ = conn.send_request("get_state")
    conn.receive_data(
        b'{"id": %d, "status": "success", "result": ' % request_id + b"[" * DEEP + b"\n"
    )
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


# --- blank lines: parsed in a loop, never by recursion (a peer sets the count) --------

BLANK_FLOODS = [b"\n" * 100_000, b"\n" * (16 * 1024 * 1024), b" \r\n" * 50_000]


@pytest.mark.parametrize("flood", BLANK_FLOODS, ids=["100k-newlines", "16MiB-newlines", "blanks"])
def test_link_core_reads_any_number_of_blank_lines(flood: bytes) -> None:
    conn = LinkConnection()
    conn.send_request("ping")
    conn.receive_data(flood + b'{"id": 1, "status": "success", "result": {}}\n')
    event = conn.next_event()
    assert isinstance(event, ResponseReceived) and event.request_id == 1


@pytest.mark.parametrize("flood", BLANK_FLOODS, ids=["100k-newlines", "16MiB-newlines", "blanks"])
def test_control_core_reads_any_number_of_blank_lines(flood: bytes) -> None:
    conn = ControlServerConnection()
    conn.receive_data(flood + b'{"id": 1, "op": "status", "token": "t"}\n')
    event = conn.next_event()
    assert isinstance(event, RequestReceived) and event.request.id == 1


# --- the control core before the token ------------------------------------------------


def test_control_lines_are_small_until_a_request_shows_the_token() -> None:
    conn = ControlServerConnection()
    conn.receive_data(b" " * (PRE_AUTH_FRAME_BYTES + 1))
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert caught.value.framing_lost and str(PRE_AUTH_FRAME_BYTES) in caught.value.message
    trusted = ControlServerConnection()
    trusted.authenticated()
    big = b'{"id": 2, "op": "status", "token": "t", "params": {"x": "' + b"y" * 1_000_000
    trusted.receive_data(big + b'"}}\n')
    assert isinstance(trusted.next_event(), RequestReceived)


@pytest.mark.parametrize(
    ("line", "expected_id", "expected_token"),
    [
        (b'{"id": 7, "op": "status", "token": "t", "params": {"x": NaN}}', 7, "t"),
        (b'{"id": 8, "op": "status", "token": "t", "params": {"x": "\\ud800"}}', 8, "t"),
        (b'{"id": 10, "token": "t", "params": ' + b"[" * 5000 + b"]" * 5000 + b"}", 10, "t"),
        (b'{"id": 11, "op": "status", "token": 12345}', 11, None),
        (b'{"id": "\\ud800", "op": "status", "token": "t", "params": NaN}', "?", "t"),
    ],
    ids=["nan", "lone-surrogate", "deep", "non-string-token", "bad-id"],
)
def test_control_bad_message_still_carries_its_id_and_token(
    line: bytes, expected_id: object, expected_token: str | None
) -> None:
    conn = ControlServerConnection()
    conn.authenticated()
    conn.receive_data(line + b"\n")
    bad = conn.next_event()
    assert isinstance(bad, BadMessage) and bad.error.code is ErrorCode.BAD_REQUEST
    assert bad.request_id == expected_id and bad.token == expected_token
    msgspec.json.decode(ControlServerConnection.send_error(bad.request_id, bad.error))


# --- stored JSON ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"a": "\xff"}', "not valid UTF-8"),
        (b'{"a": "\xed\xa0\x80"}', "not valid UTF-8"),
        (b'{"a": 1e400}', "out of range"),
        (b'{"a": -1E+0400}', "out of range"),
        (b'{"a": ' + b"9" * 4301 + b"}", "out of range"),
        (b'{"a": 18446744073709551616}', "outside the signed 64-bit range"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "nested deeper"),
        (b"[" * 2000 + b"]" * 2000, "nested deeper"),
        (b'{"a": "\\ud800"}', "truncated"),
    ],
    ids=[
        "bad-utf8",
        "raw-surrogate",
        "1e400",
        "-1E+0400",
        "4301-digits",
        "2**64",
        "65-deep",
        "2000-deep",
        "lone-escape",
    ],
)
def test_check_json_refuses_what_could_not_be_read_back(raw: bytes, problem: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        check_json(raw, "value")
    assert caught.value.code is ErrorCode.INVALID_PARAMS and problem in caught.value.message


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "Cube", "location": [0.30000001192092896, 1e-300, -2.5e38]}',
        b'{"a": 9223372036854775807, "b": -9223372036854775808, "t": "\\u00e9\\ud83d\\ude00"}',
        '{"name": "Stuhl \u00e9 \U0001f600"}'.encode(),
        b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH,
        b'{"digits": "12345678901234567890123"}',
        b'{"name": "Cube000", "e": 1.00000000000000000000001, "f": 1e-400}',
    ],
)
def test_check_json_accepts_ordinary_values(raw: bytes) -> None:
    check_json(raw, "value")


def test_unknown_param_is_refused_naming_the_key_and_the_accepted_ones() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        check_command(
            "transform_object", msgspec.Raw(b'{"name": "Leg1", "locaton": [5, 5, 5]}'), []
        )
    assert caught.value.code is ErrorCode.INVALID_PARAMS
    assert "unknown param 'locaton'" in caught.value.message
    assert "name, location, rotation, scale" in caught.value.message


_HOSTILE_VALUES = [
    b"1" + b"0" * 25,  # past 64 bits, as an int or written into a float
    b"1e400",
    b'"\\ud800"',  # a lone surrogate
    b'"\xed\xa0\x80"',  # one encoded as UTF-8
    b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
]


_VALID_PARAMS: dict[str, dict[str, object]] = {
    "create_object": {"kind": "cube"},
    "transform_object": {"name": "A"},
    "set_material": {"object": "A", "material": "M"},
    "rename_object": {"name": "A", "new_name": "B"},
    "select_objects": {"names": ["A"]},
    "delete_object": {"name": "A"},
    "get_object_info": {"name": "A"},
    "open_blend": {"path": "/tmp/a.blend"},
    "save_blend": {"path": "/tmp/a.blend"},
    "execute_code": {"code": ""},
    "get_viewport_screenshot": {"filepath": "/tmp/a.png"},
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_params_the_daemon_accepts_can_always_be_stored(command: str) -> None:
    """`check_command` skips `check_json` where the schema already refuses what it
    would: whatever it accepts must pass `check_json`, with each field (and a key the
    schema does not know) given each hostile value, alone and inside arrays and maps."""
    valid = _VALID_PARAMS.get(command, {})
    check_command(command, msgspec.Raw(msgspec.json.encode(valid)), [])
    shapes = [b"%s", b"[%s, 0, 0]", b"[%s, 0, 0, 0]", b'{"Cube": [%s, 0, 0, 1]}', b"[%s]"]
    values = [shape % value for shape in shapes for value in _HOSTILE_VALUES]
    accepted_any = False
    for field in [*COMMANDS[command].params.__struct_fields__, "unknown"]:
        others = msgspec.json.encode({k: v for k, v in valid.items() if k != field})
        for value in values:
            raw = (
                others[:-1]
                + (b"," if len(others) > 2 else b"")
                + b'"%s": %s}'
                % (
                    field.encode(),
                    value,
                )
            )
            try:
                accepted = check_command(command, msgspec.Raw(raw), [])
            except RemoteProtocolError:
                continue
            accepted_any = True
            check_json(accepted, "params")
    assert not accepted_any, f"{command} took a hostile value"
