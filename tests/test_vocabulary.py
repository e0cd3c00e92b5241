"""One definition per vocabulary, per side: the stdlib-only addon repeats what the
daemon defines (command names and params, object kinds, error codes, limits), and this
test fails the moment the two differ."""

from __future__ import annotations

import msgspec

from blender_addon import vocabulary as addon
from daemon.protocol import commands, limits, scene
from daemon.protocol.errors import ErrorCode
from daemon.store.ids import SESSION_ID_PATTERN

# PROTOCOL.md §1's error codes: the addon's whole set; the daemon adds the control ones.
LINK_ERROR_CODES = {
    "bad_request", "unknown_command", "not_found", "invalid_params", "forbidden",
    "busy_timeout", "internal",
}  # fmt: skip


def _fields(struct: type[msgspec.Struct]) -> tuple[set[str], set[str]]:
    """(required, optional) field names of a params Struct."""
    info = msgspec.structs.fields(struct)
    required = {f.name for f in info if f.required}
    return required, {f.name for f in info} - required


def test_the_same_commands_with_the_same_params_on_both_sides() -> None:
    assert set(addon.COMMAND_PARAMS) == set(commands.COMMANDS)
    for name, spec in commands.COMMANDS.items():
        required, optional = addon.COMMAND_PARAMS[name]
        assert (set(required), set(optional)) == _fields(spec.params), name


def test_the_same_read_only_and_link_only_commands() -> None:
    assert addon.READ_ONLY_COMMANDS == commands.READ_ONLY_COMMANDS
    assert addon.IO_TYPES == commands.LINK_ONLY_TYPES


def test_the_same_object_kinds() -> None:
    assert addon.OBJECT_KINDS == scene.OBJECT_KINDS
    assert set(addon.MESH_KINDS) < set(addon.OBJECT_KINDS)


def test_the_addon_answers_only_error_codes_the_daemon_knows() -> None:
    assert addon.ERROR_CODES == LINK_ERROR_CODES
    assert {code.value for code in ErrorCode} >= addon.ERROR_CODES


def test_the_same_limits() -> None:
    assert addon.MAX_FRAME_BYTES == limits.MAX_FRAME_BYTES
    assert addon.MAX_OBJECT_NAME_CHARS == limits.MAX_OBJECT_NAME_CHARS
    assert addon.MAX_COORDINATE == limits.MAX_COORDINATE
    assert (addon.MIN_FRAME, addon.MAX_FRAME) == (limits.MIN_FRAME, limits.MAX_FRAME)
    assert addon.MAX_SESSION_NAME_CHARS == limits.MAX_SESSION_NAME_CHARS
    assert addon.SESSION_ID_PATTERN == SESSION_ID_PATTERN
    code = msgspec.structs.fields(scene.ExecuteCodeParams)[0].type
    assert f"max_length={addon.MAX_CODE_CHARS}" in repr(code)
    path = msgspec.structs.fields(scene.OpenBlendParams)[0].type
    assert f"max_length={addon.MAX_PATH_CHARS}" in repr(path)
