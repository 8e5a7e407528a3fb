"""One tiny SDXL snapshot + its ONNX export per test session (about 10 s on CPU)."""

from __future__ import annotations

import pytest

from sotai.diffusion.components import GRAPHS


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    from sotai.diffusion import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "snapshot")


@pytest.fixture(scope="session")
def tiny_sdxl_onnx(tiny_sdxl, tmp_path_factory) -> dict:
    from sotai.diffusion import export_sdxl_onnx

    return export_sdxl_onnx(tiny_sdxl, tmp_path_factory.mktemp("sdxl") / "onnx", model_name="tiny-sdxl")


@pytest.fixture(scope="session")
def onnx_runners(tiny_sdxl_onnx) -> dict:
    from sotai.onnx_runner import OnnxRunner

    return {g: OnnxRunner(tiny_sdxl_onnx[g], providers=["CPUExecutionProvider"]) for g in GRAPHS}


@pytest.fixture(scope="session")
def generator(tiny_sdxl_onnx, onnx_runners):
    from sotai.diffusion import SdxlGenerator

    return SdxlGenerator(tiny_sdxl_onnx["components"], onnx_runners)


@pytest.fixture(scope="session")
def diffusers_pipeline(tiny_sdxl):
    """The reference: diffusers' own SDXL pipeline on the same weights (no watermark: it alters pixels)."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
