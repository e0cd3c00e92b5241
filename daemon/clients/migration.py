"""`blender-session migrate --to URL | --from URL`: the CLI side of pgstore.migrate."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import psycopg

from ..pgstore import SCHEMES
from ..pgstore.migrate import from_database, to_database
from ..store.datadir import DataDirError
from .client import ClientError


def run(data_dir: Path, to: str | None, source: str | None, as_json: bool) -> int:
    for url in (to, source):
        if url is not None and not url.startswith(SCHEMES):
            raise ClientError(f"{url!r} is not a postgresql:// URL", "invalid_params")
    try:
        report = to_database(data_dir, to) if to else from_database(str(source), data_dir)
    except psycopg.OperationalError as error:
        raise ClientError(f"cannot reach the database: {str(error).strip()}", "storage") from None
    except DataDirError as error:
        raise ClientError(str(error), "conflict") from None
    except RuntimeError as error:
        raise ClientError(str(error), "storage") from None
    if as_json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    where = f"into {to}" if to else f"from {source} into {data_dir}"
    print(
        f"migrated {len(report.sessions)} sessions {where}: {report.files} files, "
        f"{report.bytes} bytes, each read back with the same SHA-256"
    )
    for note in report.skipped:
        print(f"  skipped {note}")
    return 0
