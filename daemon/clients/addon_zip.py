"""Build the installable addon zip: one archive that Blender 4.2+ installs as an
extension (the manifest inside one top-level folder is allowed) and older Blenders
install as a legacy addon (bl_info in that folder's __init__.py)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from .launcher import addon_dir

ZIP_FOLDER = "blender_scene_sessions"
INCLUDED_SUFFIXES = (".py", ".toml")


def build_addon_zip(output: Path) -> list[str]:
    """Write the zip; return the member names."""
    source = addon_dir()
    members = []
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.iterdir()):
            if path.is_file() and path.suffix in INCLUDED_SUFFIXES:
                name = f"{ZIP_FOLDER}/{path.name}"
                archive.write(path, name)
                members.append(name)
    return members
