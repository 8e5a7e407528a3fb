"""Weight-only quantization keeps Dart's picks (measured on the tiny model; the bench reports the real size)."""

import numpy as np
import pytest

from sotai.dart.quantize import quantize_dart_onnx
from sotai.dart.session import OnnxDecoder


@pytest.fixture(scope="module")
def fp32(tiny_onnx_dir):
    return OnnxDecoder(tiny_onnx_dir / "model.onnx", ["CPUExecutionProvider"], threads=1)


def agreement(reference: OnnxDecoder, candidate: OnnxDecoder, prompt: list[int], steps: int = 48) -> float:
    """Top-1 agreement along the reference's greedy continuation (teacher forced)."""
    new = reference.generate([prompt], lambda _b, x: (int(np.argmax(x)), 1.0), pad_id=2, end_ids=set(), max_new_tokens=steps)[0]
    seq = np.array([prompt + [t for t, _ in new]])
    a = reference.logits(seq, np.ones_like(seq))[0, len(prompt) - 1:-1].argmax(-1)
    b = candidate.logits(seq, np.ones_like(seq))[0, len(prompt) - 1:-1].argmax(-1)
    return float((a == b).mean())


PROMPTS = [[0, 6, 7, 8, 9, 13, 31, 37, 10, 103, 107, 43, 41], [0, 6, 139, 7, 8, 137, 9, 14, 33, 37, 10, 106, 110, 115, 43, 41]]


def test_int8_graph_is_smaller_and_picks_the_same_tags(fp32, tiny_onnx_dir, tmp_path):
    path = quantize_dart_onnx(tiny_onnx_dir / "model.onnx", tmp_path / "int8" / "model.onnx", bits=8)
    assert path.stat().st_size < 0.5 * (tiny_onnx_dir / "model.onnx").stat().st_size
    assert (path.parent / "tokenizer.json").is_file()
    int8 = OnnxDecoder(path, ["CPUExecutionProvider"], threads=1)
    assert np.mean([agreement(fp32, int8, p) for p in PROMPTS]) >= 0.9


def test_int4_graph_runs_and_mostly_agrees(fp32, tiny_onnx_dir, tmp_path):
    # Random tiny weights give nearly flat logits, the worst case for 4 bits; the real
    # model's peaked distributions agree far more (see `sotai bench dart`).
    int4 = OnnxDecoder(quantize_dart_onnx(tiny_onnx_dir / "model.onnx", tmp_path / "int4" / "model.onnx", bits=4),
                       ["CPUExecutionProvider"], threads=1)
    assert np.mean([agreement(fp32, int4, p) for p in PROMPTS]) >= 0.5
