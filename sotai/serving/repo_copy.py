"""Cheap copies of a model repository: directories are new, files are symlinks.

Fault tests break their copy (delete a link, write a corrupt file in place of one) and the overload
bench rewrites its configs, without touching the original repository and without copying the 190 MB
tag index. Replace a link before changing a file: writing through it would change the original.
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
