"""SotaiGenerator: Japanese text -> Danbooru tags -> Dart -> SDXL, served by Triton."""

__version__ = "0.1.0"
