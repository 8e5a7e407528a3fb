"""One tiny Dart snapshot + its ONNX export per test session (a few seconds on CPU)."""

from __future__ import annotations

import os

import pytest

# Tags as RAG returns them (Danbooru spelling, underscores), across the categories Dart sorts.
TINY_TAGS = [
    "1girl", "1boy", "2girls", "solo", "long_hair", "short_hair", "silver_hair", "black_hair", "red_eyes",
    "blue_eyes", "smile", "open_mouth", "cherry_blossoms", "night", "night_sky", "outdoors", "tree",
    "school_uniform", "serafuku", "skirt", "dress", "hat", "ribbon", "hair_ribbon", "looking_at_viewer",
    "upper_body", "full_body", "simple_background", "white_background", "blue_background", "gradient_background",
    "^_^", "hatsune_miku", "vocaloid", "hakurei_reimu", "touhou", "original",
]


@pytest.fixture(scope="session")
def tiny_snapshot(tmp_path_factory):
    from sotai.dart import build_tiny_dart

    return build_tiny_dart(tmp_path_factory.mktemp("dart") / "snapshot", TINY_TAGS)


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_snapshot, tmp_path_factory):
    from sotai.dart import export_dart_onnx

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = tmp_path_factory.mktemp("dart") / "onnx"
    export_dart_onnx(tiny_snapshot, out)
    return out


@pytest.fixture(scope="session")
def tiny_fused_dir(tiny_onnx_dir, tmp_path_factory):
    """The tiny export with its attention fused (`sotai.dart.fuse`), tokenizer files beside it."""
    import shutil

    from sotai.dart.fuse import fuse_dart_onnx

    out = tmp_path_factory.mktemp("dart") / "onnx-fused"
    shutil.copytree(tiny_onnx_dir, out)
    fuse_dart_onnx(out / "model.onnx", out / "model.onnx")
    return out


@pytest.fixture(scope="session")
def completer(tiny_onnx_dir):
    from sotai.dart import TagCompleter

    return TagCompleter(tiny_onnx_dir, ["CPUExecutionProvider"], threads=1)


def candidate(tag: str, category="general", score=0.5, span="") -> dict:
    return {"tag": tag, "score": score, "category": category, "reason": {"span": span, "signal": "japanese_name"}}
