"""blender-sessiond with journal writes turned into no-ops: for the benchmark only,
to measure what the journal costs (`persistence` case). Never a product mode: a
daemon run this way loses every command it is killed with.

    python -m bench.daemon_without_journal <blender-sessiond arguments>
"""

from __future__ import annotations

import sys

from daemon.main import main
from daemon.store.files import JournalFile


def _discard(self: JournalFile, data: bytes) -> None:
    del self, data


if __name__ == "__main__":
    JournalFile.append = _discard  # type: ignore[method-assign]
    sys.exit(main())
