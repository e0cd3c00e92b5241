"""The daemon's settings from $XDG_CONFIG_HOME/blender-scene-sessions/config.toml (or
--config FILE): flags win over environment variables, which win over the file."""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path

import pytest

from daemon.config import build_parser, parse_args

from .programs import BIN


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("PROXY_PORT", "ADDON_PORT", "JOURNAL_FSYNC", "CHECKPOINT_EVERY"):
        monkeypatch.delenv(f"BLENDER_SESSIOND_{name}", raising=False)
    folder = tmp_path / "blender-scene-sessions"
    folder.mkdir()
    return folder / "config.toml"


def test_the_file_sets_defaults_the_environment_and_flags_win(
    config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_home.write_text(
        "proxy-port = 9878\njournal_fsync = true\naddon-port = [9876, 9880]\n"
        'checkpoint-every = 100\nlog-level = "warning"\n'
    )
    config = parse_args([])
    assert config.proxy_port == 9878 and config.journal_fsync is True
    assert (config.addon_port, config.extra_addon_ports) == (9876, (9880,))
    assert config.log_level == "warning"
    monkeypatch.setenv("BLENDER_SESSIOND_PROXY_PORT", "9999")
    assert parse_args([]).proxy_port == 9999  # the environment over the file
    assert parse_args(["--proxy-port", "7777"]).proxy_port == 7777  # a flag over both


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("proxy_prot = 1\n", "unknown setting 'proxy_prot'; known: "),
        ("proxy-port = 'x'\n", "proxy-port = 'x' is not valid"),
        ("journal-fsync = 1\n", "journal-fsync must be true or false"),
        ("log-level = 'loud'\n", "log-level must be one of"),
        ("proxy-port = \n", "is not valid TOML"),
    ],
)
def test_a_bad_file_stops_the_daemon_with_a_clear_message(
    config_home: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    config_home.write_text(text)
    with pytest.raises(SystemExit) as stopped:
        parse_args([])
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err


def test_config_names_another_file_and_the_program_says_what_is_wrong(tmp_path: Path) -> None:
    missing = subprocess.run(
        [str(BIN / "blender-sessiond"), "--config", str(tmp_path / "none.toml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "none.toml: no such file" in missing.stderr


def test_the_systemd_unit_runs_the_daemon_with_flags_it_takes() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(
        (Path(__file__).parent.parent / "docs" / "blender-sessiond.service").read_text()
    )
    program, *flags = shlex.split(unit["Service"]["ExecStart"])
    assert program.endswith("/.venv/bin/blender-sessiond")
    assert (BIN / "blender-sessiond").exists()
    build_parser().parse_args(flags)  # exits (a failed test) on a flag it does not take
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert unit["Install"]["WantedBy"] == "default.target"


def test_the_shared_store_s_settings_from_the_file_and_their_bounds(
    config_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STORE", "STORE_LEASE", "STORE_BACKLOG_KIB"):
        monkeypatch.delenv(f"BLENDER_SESSIOND_{name}", raising=False)
    config_home.write_text(
        'store = "postgresql://u@db.example:5432/sessions"\nstore-lease = 12.5\n'
        "store-backlog-kib = 2048\n"
    )
    config = parse_args([])
    assert config.store == "postgresql://u@db.example:5432/sessions"
    assert (config.store_lease_s, config.store_backlog_kib) == (12.5, 2048)
    with pytest.raises(SystemExit):
        parse_args(["--store-lease", "0"])
    assert "--store-lease 0.0 must be at least 1" in capsys.readouterr().err
