"""Cheap copies of a model repository for fault tests: directories are new, files are symlinks.

A test breaks its copy (deletes a link, writes a corrupt file in place of one) without touching the
session's repository, and without copying the 190 MB tag index.
"""

from __future__ import annotations

import os
from pathlib import Path


def link_copy(src: Path, dst: Path) -> Path:
    src = Path(src).resolve()
    for root, dirs, files in os.walk(src):
        here = Path(root)
        target = dst / here.relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in list(dirs):
            if name == "__pycache__":
                dirs.remove(name)
            elif (here / name).is_symlink():  # e.g. diffusion_stream/1/components -> ../../diffusion/...
                os.symlink(os.readlink(here / name), target / name)
                dirs.remove(name)
        for name in files:
            os.symlink((here / name).resolve(), target / name)
    return dst


def replace_with(path: Path, data: bytes) -> None:
    """Put a real file with `data` where a link of the copy was (the original stays intact)."""
    path.unlink()
    path.write_bytes(data)
