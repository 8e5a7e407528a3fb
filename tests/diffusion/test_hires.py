"""Hires fix in the core loop: the upscaled size, A1111's step counts and infotext, every upscaler, bad sizes."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from sotai.diffusion.hires import HR_UPSCALERS, hires_plan
from sotai.diffusion.png import PARAMETERS_KEY, parse_parameters
from sotai.errors import InvalidInput
from sotai.params import GenerationParams

BASE = GenerationParams(steps=2, width=512, height=512, seed=6, cfg_scale=5.0, enable_hr=True, hr_scale=1.5,
                        denoising_strength=0.5)


@pytest.fixture(scope="module")
def counting(tiny_sdxl_onnx, onnx_runners):
    from sotai.diffusion import SdxlGenerator

    shapes: list[tuple] = []

    def unet(inputs):
        shapes.append(tuple(inputs["sample"].shape[-2:]))
        return onnx_runners["unet"](inputs)

    return SdxlGenerator(tiny_sdxl_onnx["components"], {**onnx_runners, "unet": unet}), shapes


def infotext(png: bytes) -> dict:
    return parse_parameters(Image.open(io.BytesIO(png)).text[PARAMETERS_KEY])


def test_hires_paints_at_the_base_size_then_the_target_size(counting):
    generator, shapes = counting
    shapes.clear()
    events = []
    result = generator("1girl", replace(BASE, hr_second_pass_steps=3),
                       progress=lambda i, total, preview: events.append((i, total)))
    assert result.images[0].shape == (768, 768, 3)
    assert shapes == [(64, 64)] * 2 + [(96, 96)] * 3  # 2 base steps, then hr_second_pass_steps at 768
    assert events == [(i, 5) for i in range(1, 6)]
    text = infotext(result.pngs[0])
    assert text["Size"] == "512x512" and text["Hires upscale"] == "1.5" and text["Hires steps"] == "3"
    assert text["Hires upscaler"] == "Latent" and text["Denoising strength"] == "0.5"


@pytest.mark.parametrize("upscaler", HR_UPSCALERS)
def test_every_upscaler_reaches_the_target_size_and_they_differ(generator, upscaler):
    image = generator("1girl", replace(BASE, hr_upscaler=upscaler, hr_resize_x=640, hr_resize_y=576)).images[0]
    assert image.shape == (576, 640, 3)


def test_latent_and_image_space_upscales_paint_differently_and_hires_differs_from_a_plain_upscale(generator):
    latent = generator("1girl", BASE).images[0].astype(int)
    lanczos = generator("1girl", replace(BASE, hr_upscaler="Lanczos")).images[0].astype(int)
    assert np.abs(latent - lanczos).mean() > 0.5
    plain = generator("1girl", replace(BASE, enable_hr=False)).images[0]
    upscaled = np.asarray(Image.fromarray(plain).resize((768, 768), Image.LANCZOS)).astype(int)
    assert np.abs(latent - upscaled).mean() > 0.5  # a second pass ran, not only a resize


def test_a1111_step_counts_and_sizes():
    # hr_second_pass_steps of a schedule int(steps / strength) long, as A1111 with fixed img2img steps.
    plan = hires_plan(832, 1216, 28, hr_scale=1.5, hr_resize_x=0, hr_resize_y=0, hr_second_pass_steps=0,
                      denoising_strength=0.5)
    assert (plan.width, plan.height, plan.steps, plan.schedule) == (1248, 1824, 28, 56)
    plan = hires_plan(512, 768, 20, hr_scale=2, hr_resize_x=1024, hr_resize_y=0, hr_second_pass_steps=10,
                      denoising_strength=0.7)
    assert (plan.width, plan.height, plan.steps, plan.schedule) == (1024, 1536, 10, 14)
    assert hires_plan(512, 512, 20, hr_scale=2, hr_resize_x=0, hr_resize_y=0, hr_second_pass_steps=0,
                      denoising_strength=0.0).steps == 0


@pytest.mark.parametrize("changes, field", [
    ({"hr_scale": 1.3}, "hr_scale"),  # 665.6 -> 665: not a multiple of 32
    ({"hr_scale": 5.0}, "hr_scale"),
    ({"hr_resize_x": 4096}, "hr_resize_x"),
    ({"hr_upscaler": "R-ESRGAN 4x+"}, "hr_upscaler"),
    ({"hr_second_pass_steps": 500}, "hr_second_pass_steps"),
])
def test_bad_hires_fields_are_refused_naming_them(generator, changes, field):
    with pytest.raises(InvalidInput) as caught:
        generator("1girl", replace(BASE, **changes))
    assert caught.value.field == field
