"""Weight-only quantization of Dart's ONNX graph (4 or 8 bits), for fast CPU decoding.

Decoding one tag at a time is bound by reading weights, so smaller weights are what make
Dart fast on CPU:
every MatMul with a constant weight (attention, experts, lm_head) becomes `MatMulNBits`.
Symmetric, block-wise along the input dimension; accuracy level 4 lets the kernels use int8
activations. `sotai bench dart` reports greedy top-1 agreement with the fp32 graph.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sotai.errors import MissingArtifact

BLOCK_SIZE = 32
ACCURACY_LEVEL = 4
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json", "generation_config.json", "tags.json")


def quantize_dart_onnx(model_path: Path, out_path: Path, *, bits: int = 4, block_size: int = BLOCK_SIZE) -> Path:
    """Write the quantized graph of `model_path` to `out_path` (tokenizer files copied beside it)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    if bits not in (4, 8):
        raise ValueError(f"bits={bits}: Dart is quantized to 4 or 8 bits")
    model_path, out_path = Path(model_path), Path(out_path)
    if not model_path.is_file():
        raise MissingArtifact("Dart ONNX graph", model_path, "make export")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)  # a line per node
    model = onnx.load(str(model_path))
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=True, accuracy_level=ACCURACY_LEVEL)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out_path), use_external_data_format=False)
    if model_path.parent != out_path.parent:
        for name in COPIED_FILES:
            if (model_path.parent / name).is_file():
                shutil.copy2(model_path.parent / name, out_path.parent / name)
    return out_path
