"""Checking opaque JSON before it is stored: what the daemon journals must be readable
back by its own tools, whatever a peer sent.

msgspec validates the syntax of a `Raw` field but not its contents: invalid UTF-8 and
UTF-8-encoded surrogates inside strings, `1e400`, 4,000-digit integers and nesting
just under the reader's limit all pass, are journaled, and then break `show` or the
next start. `check_json` refuses them. It is cheap for ordinary values: a few C-level
scans of the bytes, and a full parse only when one of them finds something to look at.
"""

from __future__ import annotations

import math
import re

import msgspec

from .errors import ErrorCode, RemoteProtocolError
from .limits import MAX_JSON_DEPTH, MAX_JSON_INT, MIN_JSON_INT

# An integer literal long enough to leave the signed 64-bit range (19+ digits, not the
# digits of a fraction), or an exponent of three digits (1e400 overflows a double).
_BIG_NUMBER = re.compile(rb"(?<![0-9.])-?[0-9]{19,}(?![0-9.eE])|[eE][+-]?[0-9]{3,}")
_any_decoder = msgspec.json.Decoder()


def check_json(raw: bytes | msgspec.Raw, what: str) -> None:
    """Refuse a JSON value that could not be stored and read back.

    `raw` must already be syntactically valid JSON (a msgspec `Raw` from a decode).
    Raises RemoteProtocolError(invalid_params) naming `what` and the problem.
    """
    data = bytes(raw)
    if not data.isascii():
        try:
            data.decode("utf-8")  # strict: also refuses UTF-8-encoded surrogates
        except UnicodeDecodeError as error:
            raise _refuse(what, f"it is not valid UTF-8 (byte {error.start})") from None
    deep = data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH
    if not (deep or b"\\u" in data or _BIG_NUMBER.search(data)):
        return
    try:
        value = _any_decoder.decode(data)
    except RecursionError:
        raise _refuse(what, f"it is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except msgspec.DecodeError as error:  # a lone surrogate escape, a number out of range
        raise _refuse(what, str(error)) from None
    _walk(value, what)


def _walk(value: object, what: str) -> None:
    """Depth, integer range and finiteness, without recursion (a peer sets the depth)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _refuse(what, f"it is nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int) and not MIN_JSON_INT <= item <= MAX_JSON_INT:
            raise _refuse(what, f"integer {str(item)[:30]}... is outside the signed 64-bit range")
        elif isinstance(item, float) and not math.isfinite(item):
            raise _refuse(what, f"number {item!r} is not finite")


def _refuse(what: str, problem: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.INVALID_PARAMS, f"{what} cannot be stored: {problem}; send plain JSON values"
    )
