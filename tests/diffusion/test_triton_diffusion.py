"""The `diffusion` BLS model in the real tritonserver: parity with diffusers, batches, per-request errors."""

from __future__ import annotations


import numpy as np
import pytest

from sotai.diffusion.png import decode_png, read_png_parameters
from sotai.params import PARAMS_BY_TENSOR, GenerationParams, infer_inputs, request_rows

from .reference import MAX_MEAN_ABS_DIFF, diffusers_image, mean_abs_diff


def diffusion_inputs(module, prompt: str, rows: list[GenerationParams], *, optional: bool = False):
    """One request with len(rows) batch rows, each [1] per input as in the model's config; without
    `optional`, only the inputs every repository has had (as an older client sends them)."""
    arrays = request_rows([(prompt, r) for r in rows])
    if not optional:
        arrays = {k: v for k, v in arrays.items() if k not in PARAMS_BY_TENSOR or not PARAMS_BY_TENSOR[k].optional}
    return infer_inputs(module, arrays)


@pytest.fixture(scope="module")
def grpc_client(triton):
    import tritonclient.grpc as grpc

    return grpc.InferenceServerClient(triton.grpc_url)


@pytest.fixture(scope="module")
def reference_pipeline(tiny_repository):
    """diffusers on the snapshot the served repository was exported from."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_repository.parent / "src" / "sdxl", add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("scheduler", ["euler_a", "dpmpp_2m_karras"])
def test_triton_image_matches_diffusers(grpc_client, reference_pipeline, scheduler):
    import tritonclient.grpc as grpc

    # The Triton model applies Animagine's prompt defaults; ask diffusers for the same final prompt.
    p = GenerationParams(steps=4, cfg_scale=7.0, width=512, height=640, seed=4321, scheduler=scheduler,
                         negative_prompt="lowres", num_images=1)
    result = grpc_client.infer("diffusion", diffusion_inputs(grpc, "1girl, night", [p]))
    png = result.as_numpy("IMAGE")[0][0]
    meta = read_png_parameters(png)
    assert int(result.as_numpy("SEED_USED")[0][0]) == 4321
    want = diffusers_image(reference_pipeline, meta["prompt"],
                           GenerationParams(**{**p.__dict__, "negative_prompt": meta["negative_prompt"]}))[0]
    got = decode_png(png)
    assert got.shape == want.shape == (640, 512, 3)
    assert mean_abs_diff(got, want) <= MAX_MEAN_ABS_DIFF


def test_every_row_of_a_batch_is_answered(grpc_client):
    import tritonclient.grpc as grpc

    rows = [GenerationParams(steps=2, width=512, height=512, seed=1, num_images=1),
            GenerationParams(steps=2, width=512, height=512, seed=2, num_images=2)]
    result = grpc_client.infer("diffusion", diffusion_inputs(grpc, "1girl", rows))
    images, seeds = result.as_numpy("IMAGE"), result.as_numpy("SEED_USED")
    assert images.shape == (2, 2) and seeds.ravel().tolist() == [1, 2]
    assert images[0][1] == b""  # row 0 asked for one image; its second slot is padding
    pixels = [decode_png(images[r][k]) for r, k in ((0, 0), (1, 0), (1, 1))]
    assert all(p.shape == (512, 512, 3) for p in pixels)
    # Pixels, not PNG bytes (those differ by their parameters chunk even when the pixels are equal).
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert mean_abs_diff(pixels[a], pixels[b]) > 1.0, (a, b)


def test_out_of_range_parameter_is_invalid_arg_naming_the_field(grpc_client):
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    bad = GenerationParams(steps=2, width=520, height=512, seed=1).__dict__ | {"steps": 0}
    with pytest.raises(InferenceServerException) as err:
        grpc_client.infer("diffusion", diffusion_inputs(grpc, "1girl", [GenerationParams(**bad)]))
    assert "INVALID_ARG" in str(err.value.status()) and "steps=0" in err.value.message()


def test_prompt_weights_through_triton(grpc_client):
    import tritonclient.grpc as grpc

    p = [GenerationParams(steps=2, width=512, height=512, seed=5, num_images=1)]

    def paint(prompt):
        result = grpc_client.infer("diffusion", diffusion_inputs(grpc, prompt, p))
        png = result.as_numpy("IMAGE")[0][0]
        return decode_png(png).astype(int), read_png_parameters(png)["prompt"]

    plain, _ = paint("1girl, silver hair")
    one, written = paint("1girl, (silver hair:1.0)")
    np.testing.assert_array_equal(one, plain)  # the BLS model encodes with the same library code
    assert written.startswith("1girl, (silver hair:1.0)")  # the PNG keeps the prompt as written, as A1111
    heavy, _ = paint("1girl, (silver hair:1.5)")
    assert mean_abs_diff(heavy, plain) > 0.1


def test_img2img_through_triton_paints_what_the_library_paints(grpc_client, tiny_repository):
    """INIT_IMAGE and DENOISING_STRENGTH reach the loop, and the VAE encoder is served (BLS)."""
    import io
    from dataclasses import replace

    import tritonclient.grpc as grpc
    from PIL import Image

    from sotai.diffusion import SdxlGenerator
    from sotai.diffusion.components import GRAPHS
    from sotai.onnx_runner import OnnxRunner

    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 60, 30)).save(buf, format="PNG")
    params = GenerationParams(steps=4, width=512, height=512, seed=8, init_image=buf.getvalue(),
                              denoising_strength=0.5)
    result = grpc_client.infer("diffusion", diffusion_inputs(grpc, "1girl", [params], optional=True))
    png = result.as_numpy("IMAGE")[0][0]
    assert read_png_parameters(png)["Denoising strength"] == "0.5"
    local = SdxlGenerator(tiny_repository / "diffusion" / "1" / "components",
                          {g: OnnxRunner(tiny_repository / g / "1" / "model.onnx", providers=["CPUExecutionProvider"])
                           for g in GRAPHS})
    assert mean_abs_diff(decode_png(png), local("1girl", params).images[0]) < MAX_MEAN_ABS_DIFF
    txt2img = grpc_client.infer("diffusion", diffusion_inputs(grpc, "1girl", [replace(params, init_image=b"")],
                                                              optional=True)).as_numpy("IMAGE")[0][0]
    assert mean_abs_diff(decode_png(txt2img), decode_png(png)) > 1.0
