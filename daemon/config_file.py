"""The daemon's flags from a TOML file: `$XDG_CONFIG_HOME/blender-scene-sessions/
config.toml` (~/.config/... by default; `--config FILE` for another). Keys are the
flags' long names without the dashes (`proxy-port = 9878`, or `proxy_port`). A flag on
the command line wins over its environment variable, which wins over the file, which
wins over the built-in default. An unknown key or a value of the wrong type stops the
daemon with a message naming it."""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path

APP_NAME = "blender-scene-sessions"
CONFIG_NAME = "config.toml"


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / APP_NAME / CONFIG_NAME


def apply(parser: argparse.ArgumentParser, path: Path, env_prefix: str, explicit: bool) -> None:
    """Make the file's settings the parser's defaults (where no environment variable
    is set). A missing file is fine unless it was named with --config."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        if explicit:
            parser.error(f"--config {path}: no such file")
        return
    except OSError as error:
        parser.error(f"cannot read the config file {path}: {error.strerror or error}")
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        parser.error(f"config file {path} is not valid TOML: {error}")
    flags = {
        action.option_strings[0].lstrip("-"): action
        for action in parser._actions
        if action.option_strings
        and action.option_strings[0].startswith("--")
        and action.dest not in ("help", "version", "config")
    }
    defaults: dict[str, object] = {}
    for key, value in values.items():
        name = key.replace("_", "-")
        action = flags.get(name)
        if action is None:
            parser.error(
                f"config file {path}: unknown setting {key!r}; known: {', '.join(sorted(flags))}"
            )
        if env_prefix + name.upper().replace("-", "_") in os.environ:
            continue  # the environment wins over the file
        defaults[action.dest] = _converted(parser, path, key, action, value)
    parser.set_defaults(**defaults)


def _converted(
    parser: argparse.ArgumentParser, path: Path, key: str, action: argparse.Action, value: object
) -> object:
    def refuse(expected: str) -> None:
        parser.error(f"config file {path}: {key} must be {expected}, got {value!r}")

    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            refuse("true or false")
        return value
    if isinstance(action, argparse._AppendAction):  # --addon-port, repeatable
        items = value if isinstance(value, list) else [value]
        return [_one(parser, path, key, action, item) for item in items]
    if isinstance(value, list | dict | bool):
        refuse("a single value")
    return _one(parser, path, key, action, value)


def _one(
    parser: argparse.ArgumentParser, path: Path, key: str, action: argparse.Action, value: object
) -> object:
    convert = action.type if callable(action.type) else str
    try:
        converted = convert(str(value))
    except (TypeError, ValueError) as error:
        parser.error(f"config file {path}: {key} = {value!r} is not valid: {error}")
    if action.choices is not None and converted not in action.choices:
        parser.error(f"config file {path}: {key} must be one of {list(action.choices)}")
    return converted
