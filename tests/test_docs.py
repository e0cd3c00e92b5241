"""The docs stay true to the code: every limit is documented with its reason, and every
flag of the daemon appears in the README."""

from __future__ import annotations

import re
from pathlib import Path

from daemon.config import build_parser
from daemon.protocol import limits

ROOT = Path(__file__).resolve().parent.parent


def test_every_limit_is_documented() -> None:
    documented = (ROOT / "docs" / "limits.md").read_text()
    constants = [name for name in vars(limits) if re.fullmatch(r"[A-Z][A-Z0-9_]+", name)]
    assert len(constants) >= 15
    missing = [name for name in constants if f"`{name}`" not in documented]
    assert missing == []


def test_every_daemon_flag_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    flags = [
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    missing = [flag for flag in flags if f"`{flag}" not in readme]
    assert missing == []
