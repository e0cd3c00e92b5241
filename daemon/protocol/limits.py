"""Every limit on what a peer may send, in one place, each with the reason for its value.

The stdlib-only addon repeats the ones it enforces (`blender_addon/vocabulary.py`);
tests/test_vocabulary.py fails when the two sides differ.
"""

from __future__ import annotations

# One message (a line, a bare JSON object or a length-prefixed frame). 16 MiB: a
# get_state snapshot of 10,000 objects is about 1.6 MB, so this leaves an order of
# magnitude of headroom while bounding what one peer can make us buffer.
MAX_FRAME_BYTES = 16 * 1024 * 1024

# A control connection's lines before it has shown the token. 64 KiB holds any
# request an honest client sends first (status, open, a command) while keeping an
# unauthenticated connection to a few tens of KiB of daemon memory.
PRE_AUTH_FRAME_BYTES = 64 * 1024

# How long a control connection may stay open without one request carrying the right
# token: long enough for a slow script to connect and send, short enough that idle
# sockets cannot pile up.
AUTH_DEADLINE_S = 10.0

# Open connections per listening port (control, proxy). The default fd limit is
# 1,024; this leaves room for journals, the link, snapshots and the log.
MAX_CONNECTIONS = 256

# The recording proxy has no token (blender-mcp clients send none) and takes frames up
# to MAX_FRAME_BYTES, so its connections are capped lower: 32 x 16 MiB bounds what
# unauthenticated peers can make the daemon buffer to 512 MiB; blender-mcp's server
# holds one connection at a time.
MAX_PROXY_CONNECTIONS = 32

# Nesting of any JSON value a peer sends (params, free-form data, results). Records
# nest a command's params 5 levels deeper, and msgspec (like Python) reads about 990
# levels: 64 keeps everything accepted readable back, and scene data needs under 8.
MAX_JSON_DEPTH = 64

# Integers in stored JSON: what msgspec, JavaScript's BigInt-free readers and
# PostgreSQL's bigint all read exactly as a signed 64-bit value.
MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**63 - 1

# Object and material names: Blender's own limit (MAX_ID_NAME - 2).
MAX_OBJECT_NAME_CHARS = 63

# Session names are for people; they never become paths.
MAX_SESSION_NAME_CHARS = 200

# Free-form values are for notes and small structured data, not assets.
MAX_DATA_VALUE_BYTES = 1024 * 1024

# Commands in one `session.batch` request: its reply (a result each, ~200 bytes for a
# create) stays a few MiB; the CLI's `cmd --file` sends 500 at a time.
MAX_BATCH_COMMANDS = 10_000

# A reply the daemon's own clients accept: one command of a session's history may
# hold params and a result of up to MAX_FRAME_BYTES each, and a page of history is
# cut at MAX_FRAME_BYTES, so a reply stays under four frames.
MAX_REPLY_FRAME_BYTES = 4 * MAX_FRAME_BYTES

# Coordinates, rotations and scales: Blender stores them as 32-bit floats, which hold
# up to 3.4e38; a finite double above that becomes infinity inside Blender.
MAX_COORDINATE = 1e30

# Scene frames: Blender's own range (MINAFRAME..MAXAFRAME).
MIN_FRAME = -1_048_574
MAX_FRAME = 1_048_574

# Import of an archive (`session.import`), read as a stream: caps on what it may
# unpack, so a small hostile archive cannot fill the disk or take minutes to refuse.
# Total unpacked bytes: a 10,000-object .blend is tens of MB; 8 GiB moves hundreds
# of sessions at once.
IMPORT_MAX_TOTAL_BYTES = 8 * 1024**3
# Files in one archive: three per session.
IMPORT_MAX_MEMBERS = 30_000
# Unpacked bytes per compressed byte, checked once 64 MiB are unpacked: JSON records
# compress 10-50x and .blend files 3-10x; a gzip bomb of zeros ~1,000x.
IMPORT_MAX_RATIO = 200
IMPORT_RATIO_GRACE_BYTES = 64 * 1024**2
# One session record read into memory to be checked (the rest is streamed to disk).
IMPORT_MAX_RECORD_BYTES = 512 * 1024**2
