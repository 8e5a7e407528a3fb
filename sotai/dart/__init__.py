"""Dart stage: RAG candidates -> the final, ordered Danbooru tag set (p1atdev/dart-v2-moe-sft).

- `build_tiny_dart(out_dir, tags)`: a tiny random-weight snapshot laid out like the hub's.
- `export_dart_onnx(snapshot_dir, out_dir)`: one ONNX decoder graph with the KV cache.
- `TagCompleter(model_dir).complete(candidates, width=, height=, rating=, sampling=)`.
"""

from sotai.dart.completer import DartRequest, DartResult, TagCompleter
from sotai.dart.export import export_dart_onnx
from sotai.dart.sampling import DartSampling
from sotai.dart.tiny import build_tiny_dart

__all__ = ["DartRequest", "DartResult", "DartSampling", "TagCompleter", "build_tiny_dart", "export_dart_onnx"]
