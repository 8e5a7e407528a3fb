"""Dart stage: RAG candidates -> the final, ordered Danbooru tag set (p1atdev/dart-v2-moe-sft)."""

from sotai.dart.tiny import build_tiny_dart

__all__ = ["build_tiny_dart"]
