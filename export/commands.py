"""`sotai snapshot write REPO`: a hub-layout snapshot at the real architecture, random weights (export.snapshots)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sotai.settings import get_settings


def default_dest(repo_id: str) -> Path:
    # <SOTAI_MODELS_DIR>/real/<org>/<name>: what SD_MODEL_PATH / DART_MODEL_PATH then point at.
    return get_settings().models_dir / "real" / repo_id


def cmd_snapshot_write(args) -> int:
    from sotai.export.snapshots import write_snapshot

    dest = args.dest or default_dest(args.repo_id)
    parts = tuple(p for p in args.parts.split(",") if p) if args.parts else None
    path = write_snapshot(args.repo_id, dest, parts)
    print(f"snapshot: {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from sotai.export.snapshots import REAL_MODELS, SDXL_PARTS

    snapshot = subparsers.add_parser("snapshot")
    snapshot_sub = snapshot.add_subparsers(metavar="ACTION")
    p = snapshot_sub.add_parser("write", help="write a hub-layout snapshot (real configs and tokenizers, "
                                              "random fp16 weights)")
    p.add_argument("repo_id", choices=sorted(REAL_MODELS))
    p.add_argument("--dest", type=Path, default=None, help="default: <SOTAI_MODELS_DIR>/real/<repo_id>")
    p.add_argument("--parts", default=None, help=f"SDXL parts to write, comma-separated (default: all of "
                                                 f"{','.join(SDXL_PARTS)})")
    p.set_defaults(func=cmd_snapshot_write)
