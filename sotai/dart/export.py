"""Dart -> one ONNX decoder graph that takes and returns the KV cache (optimum `main_export`).

optimum has no ONNX config for Mixtral; Mistral's fits (same attention, `num_key_value_heads`).
While tracing, a patcher exports each sparse-MoE block as one onnxruntime MoE node
(`sotai.dart.moe`): the stock forward loops over the experts *hit by the dummy input*, so
tracing it would bake that set into the graph.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from sotai.errors import MissingArtifact

TASK = "text-generation-with-past"
OPSET = 17
ATOL = 1e-4
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json", "generation_config.json", "tags.json")


def dart_onnx_config(config, task: str = TASK):
    """Mistral's decoder-with-past ONNX config, with the Mixtral MoE patch applied while tracing."""
    from optimum.exporters.onnx.model_configs import MistralOnnxConfig
    from optimum.exporters.onnx.model_patcher import ModelPatcher
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    from sotai.dart.moe import moe_block_forward

    class MixtralMoePatcher(ModelPatcher):
        def __enter__(self):
            super().__enter__()
            self._orig_moe = MixtralSparseMoeBlock.forward
            MixtralSparseMoeBlock.forward = moe_block_forward

        def __exit__(self, *exc):
            MixtralSparseMoeBlock.forward = self._orig_moe
            super().__exit__(*exc)

    class DartOnnxConfig(MistralOnnxConfig):
        DEFAULT_ONNX_OPSET = OPSET
        ATOL_FOR_VALIDATION = ATOL
        _MODEL_PATCHER = MixtralMoePatcher

    return DartOnnxConfig(config, task=task, use_past=True, use_past_in_inputs=True)


def export_dart_onnx(snapshot_dir: Path, out_dir: Path, *, quantize_bits: int | None = None, fuse: bool | None = None) -> Path:
    """Export `snapshot_dir` (a dart-v2-moe-sft-like HF snapshot) to `out_dir/model.onnx`; returns it.

    The tokenizer files and config.json are copied beside the graph, so `out_dir` alone is
    what `TagCompleter` (and the Triton `dart` model) needs. optimum validates the fp32 graph
    against PyTorch (atol 1e-4). `quantize_bits` 8 or 4 then replaces it by the weight-only
    quantized graph (`sotai.dart.quantize`): several times faster on CPU.
    `fuse` (default: when quantizing, i.e. for CPU serving) rewrites each layer's attention into
    one `GroupQueryAttention` node (`sotai.dart.fuse`); onnxruntime has that kernel in fp32 for
    CPU only (CUDA's is fp16), so the fp32 graph served on GPU stays unfused.
    """
    import torch
    from optimum.exporters.onnx import main_export
    from transformers import AutoConfig

    snapshot_dir, out_dir = Path(snapshot_dir), Path(out_dir)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (snapshot_dir / name).is_file():
            raise MissingArtifact("Dart snapshot file", snapshot_dir / name, "make export")
    config = AutoConfig.from_pretrained(snapshot_dir)  # no trust_remote_code: Mixtral is built in
    out_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch's tracer warns about every shape-dependent Python branch in transformers;
        # optimum's validation and our parity test check the traced graph instead.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        main_export(
            str(snapshot_dir),
            output=out_dir,
            task=TASK,
            opset=OPSET,
            do_validation=True,
            atol=ATOL,
            custom_onnx_configs={"model": dart_onnx_config(config)},
            library_name="transformers",
            trust_remote_code=False,
            local_files_only=True,
        )
    for name in TOKENIZER_FILES:
        if (snapshot_dir / name).is_file():
            shutil.copy2(snapshot_dir / name, out_dir / name)
    model_path = out_dir / "model.onnx"
    if not model_path.is_file():
        raise MissingArtifact("Dart ONNX graph", model_path, "make export", detail="optimum wrote no model.onnx")
    if fuse if fuse is not None else quantize_bits is not None:
        from sotai.dart.fuse import fuse_dart_onnx

        fuse_dart_onnx(model_path, model_path)
    if quantize_bits is not None:
        from sotai.dart.quantize import quantize_dart_onnx

        fp32 = model_path.with_name("model_fp32.onnx")
        model_path.rename(fp32)
        quantize_dart_onnx(fp32, model_path, bits=quantize_bits)
        fp32.unlink()
    return model_path

