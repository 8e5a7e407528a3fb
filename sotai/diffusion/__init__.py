"""The diffusion stage: SDXL export to ONNX and the denoising loop the Triton `diffusion` model runs."""

from sotai.diffusion.components import Manifest
from sotai.diffusion.export import export_sdxl_onnx
from sotai.diffusion.pipeline import GenerationResult, SdxlGenerator, required_outputs
from sotai.diffusion.tiny import build_tiny_sdxl

__all__ = ["GenerationResult", "Manifest", "SdxlGenerator", "build_tiny_sdxl", "export_sdxl_onnx", "required_outputs"]
