"""img2img in the core loop: int(steps x denoising_strength) UNet steps (none at 0), the init image shapes the
picture, bad images are refused naming init_image, and the PNG says the strength as A1111 writes it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sotai.diffusion.png import PARAMETERS_KEY
from sotai.errors import InvalidInput
from sotai.params import GenerationParams

BASE = GenerationParams(steps=4, width=512, height=512, seed=3, cfg_scale=5.0)


def png(color: tuple[int, int, int], size=(320, 256)) -> bytes:
    """A two-colour picture (a different size from the request's: it is resized, as A1111 does)."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, : size[0] // 2] = color
    pixels[:, size[0] // 2:] = (255 - color[0], 255 - color[1], 255 - color[2])
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def counting(tiny_sdxl_onnx, onnx_runners):
    """The session's graphs, with the UNet's rows counted per call."""
    from sotai.diffusion import SdxlGenerator

    calls: list[int] = []

    def unet(inputs):
        calls.append(1)
        return onnx_runners["unet"](inputs)

    return SdxlGenerator(tiny_sdxl_onnx["components"], {**onnx_runners, "unet": unet}), calls


@pytest.mark.parametrize("strength, steps", [(0.5, 2), (0.75, 3), (1.0, 4), (0.0, 0), (0.3, 1)])
def test_img2img_runs_int_steps_times_strength_unet_steps(counting, strength, steps):
    generator, calls = counting
    calls.clear()
    events = []
    from dataclasses import replace

    result = generator("1girl", replace(BASE, init_image=png((200, 40, 40)), denoising_strength=strength),
                       progress=lambda i, total, preview: events.append((i, total)))
    assert len(calls) == steps
    assert [e[0] for e in events] == list(range(1, steps + 1)) and all(t == steps for _, t in events)
    assert result.images[0].shape == (512, 512, 3)


@pytest.mark.parametrize("strength, least", [(0.0, 3.0), (0.5, 0.5)])
def test_the_init_image_shapes_the_picture(generator, strength, least):
    # Mean |red - blue| on the tiny random-weight model, measured: 9.7 at strength 0 (the VAE round trip),
    # 1.46 at 0.5 (its random UNet repaints strongly); an init image that is ignored gives 0.
    from dataclasses import replace

    red = generator("1girl", replace(BASE, init_image=png((220, 30, 30)), denoising_strength=strength)).images[0]
    blue = generator("1girl", replace(BASE, init_image=png((30, 30, 220)), denoising_strength=strength)).images[0]
    plain = generator("1girl", BASE).images[0]
    assert np.abs(red.astype(int) - blue.astype(int)).mean() > least
    assert np.abs(red.astype(int) - plain.astype(int)).mean() > 5  # measured 24-30: not the txt2img picture


def test_png_parameters_say_the_denoising_strength(generator):
    from dataclasses import replace

    result = generator("1girl", replace(BASE, init_image=png((90, 90, 90)), denoising_strength=0.6))
    text = Image.open(io.BytesIO(result.pngs[0])).text[PARAMETERS_KEY]
    assert "Denoising strength: 0.6" in text
    plain = generator("1girl", BASE)
    assert "Denoising strength" not in Image.open(io.BytesIO(plain.pngs[0])).text[PARAMETERS_KEY]


@pytest.mark.parametrize("params, words", [
    (GenerationParams(init_image=b"not an image"), "is not a readable image"),
    (GenerationParams(init_image=png((1, 2, 3)), denoising_strength=1.5), "0.0..1.0"),
    (GenerationParams(init_image="abc"), "must be the bytes of"),
])
def test_bad_init_images_are_refused_naming_the_field(generator, params, words):
    with pytest.raises(InvalidInput) as caught:
        generator("1girl", params)
    assert caught.value.field in ("init_image", "denoising_strength") and words in str(caught.value)
