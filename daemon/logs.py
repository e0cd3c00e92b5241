"""structlog configuration: the only place logging is set up (called from main)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

# JSON lines go out as bytes through msgspec: the canonical `command_done` line is
# written for every command, so rendering it is on the hot path (with the stdlib json
# renderer it cost ~20 us per command, measured with bench/run.py).
_json_encoder = msgspec.json.Encoder(enc_hook=repr)


def _json_bytes(event: object, **_: object) -> bytes:
    return _json_encoder.encode(event)


def configure_logging(log_format: str = "auto", level: str = "info") -> None:
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    processors: list[structlog.typing.Processor]
    if use_console:
        processors = [*shared, structlog.dev.ConsoleRenderer()]
        factory: Any = structlog.PrintLoggerFactory(file=sys.stderr)
    else:
        processors = [*shared, structlog.processors.JSONRenderer(serializer=_json_bytes)]
        factory = structlog.BytesLoggerFactory(file=sys.stderr.buffer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
