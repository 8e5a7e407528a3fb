"""The diffusion stage: SDXL export to ONNX and the denoising loop the Triton `diffusion` model runs.

The exports load on first use (PEP 562), so `sotai.diffusion.conventions` (read by the settings and
the CLI) comes without torch.
"""

from __future__ import annotations

import importlib

# Each export -> the module that defines it.
_EXPORTS = {
    "GenerationResult": "sotai.diffusion.pipeline", "SdxlGenerator": "sotai.diffusion.pipeline",
    "required_outputs": "sotai.diffusion.pipeline", "Manifest": "sotai.diffusion.components",
    "export_sdxl_onnx": "sotai.diffusion.export", "build_tiny_sdxl": "sotai.diffusion.tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
