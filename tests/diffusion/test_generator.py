"""SdxlGenerator over ONNX Runtime: every parameter does what it says, bad input is refused by name."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sotai.diffusion.png import decode_png, read_png_parameters
from sotai.errors import InvalidInput, StageError
from sotai.params import GenerationParams

FAST = GenerationParams(steps=2, width=512, height=512, seed=7, quality_tags=False, default_negative=False)


def _params(**kw) -> GenerationParams:
    return GenerationParams(**{**FAST.__dict__, **kw})


def test_image_has_the_requested_size_and_decodes_from_png(generator):
    result = generator("1girl, silver hair", _params(width=576, height=768))
    assert len(result.images) == len(result.pngs) == 1
    assert result.images[0].shape == (768, 576, 3) and result.images[0].dtype == np.uint8
    decoded = np.asarray(Image.open(io.BytesIO(result.pngs[0])).convert("RGB"))
    np.testing.assert_array_equal(decoded, result.images[0])


def test_same_seed_same_pixels_other_seed_other_pixels(generator):
    a = generator("1girl", _params(seed=123))
    b = generator("1girl", _params(seed=123))
    c = generator("1girl", _params(seed=124))
    np.testing.assert_array_equal(a.images[0], b.images[0])
    assert a.pngs == b.pngs
    assert np.abs(a.images[0].astype(int) - c.images[0].astype(int)).mean() > 1


def test_random_seed_is_returned_and_reproduces_the_image(generator):
    first = generator("1girl", _params(seed=-1))
    assert 0 <= first.seed < 2**32
    again = generator("1girl", _params(seed=first.seed))
    np.testing.assert_array_equal(first.images[0], again.images[0])


def test_num_images_gives_that_many_distinct_images(generator):
    result = generator("1girl", _params(num_images=3))
    assert len(result.images) == 3
    # Pixels, not PNG bytes (those differ by their Batch pos even when the pixels are equal).
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert np.abs(result.images[a].astype(int) - result.images[b].astype(int)).mean() > 1, (a, b)
        np.testing.assert_array_equal(decode_png(result.pngs[a]), result.images[a])


@pytest.mark.parametrize("scheduler", ["euler_a", "euler", "dpmpp_2m_karras"])
def test_every_scheduler_runs_and_is_named_in_the_png(generator, scheduler):
    result = generator("1girl", _params(scheduler=scheduler, steps=3))
    sampler = read_png_parameters(result.pngs[0])["Sampler"]
    assert sampler == {"euler_a": "Euler a", "euler": "Euler", "dpmpp_2m_karras": "DPM++ 2M Karras"}[scheduler]


def test_schedulers_and_cfg_change_the_picture(generator):
    base = generator("1girl", _params(steps=3)).images[0].astype(int)
    other_scheduler = generator("1girl", _params(steps=3, scheduler="dpmpp_2m_karras")).images[0].astype(int)
    other_cfg = generator("1girl", _params(steps=3, cfg_scale=12.0)).images[0].astype(int)
    no_cfg = generator("1girl", _params(steps=3, cfg_scale=1.0)).images[0].astype(int)
    for other in (other_scheduler, other_cfg, no_cfg):
        assert np.abs(base - other).mean() > 0.1


def test_png_carries_a1111_parameters(generator):
    result = generator("1girl, smile", _params(negative_prompt="lowres", steps=3, cfg_scale=6.5, seed=99))
    p = read_png_parameters(result.pngs[0])
    assert p["prompt"] == "1girl, smile" and p["negative_prompt"] == "lowres"
    assert (p["Steps"], p["CFG scale"], p["Seed"], p["Size"], p["Model"]) == ("3", "6.5", "99", "512x512", "tiny-sdxl")


def test_animagine_defaults_are_applied_and_can_be_turned_off(generator):
    on = generator("1girl", _params(quality_tags=True, default_negative=True, rating="general"))
    assert on.prompt == "1girl, rating: general, masterpiece, best quality"  # Animagine XL 3.0's tags
    assert on.negative_prompt.startswith("nsfw, lowres, bad anatomy")
    off = generator("1girl", _params())
    assert (off.prompt, off.negative_prompt) == ("1girl", "")
    assert np.abs(on.images[0].astype(int) - off.images[0].astype(int)).mean() > 0.1


def test_prompt_longer_than_77_tokens_is_encoded_whole_not_truncated(generator):
    short = "1girl, " * 20
    long = short + "red eyes, " * 40  # well past one 77-token window
    assert len(generator.tokenizers[0](long).input_ids) > 77
    a = generator(short, _params()).images[0].astype(int)
    b = generator(long, _params()).images[0].astype(int)
    assert np.abs(a - b).mean() > 0.1  # the tail changed the picture: it was not cut off


def test_progress_reports_every_step_with_a_preview(generator):
    seen = []
    generator("1girl", _params(steps=4, width=512, height=640), lambda i, n, preview: seen.append((i, n, preview.shape)))
    assert seen == [(i, 4, (80, 64, 3)) for i in range(1, 5)]


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", 0), ("steps", 101), ("cfg_scale", 30.5), ("width", 500), ("height", 4096), ("seed", -2),
     ("num_images", 9), ("scheduler", "ddim"), ("negative_prompt", "a\x00b")],
)
def test_bad_parameters_are_refused_naming_the_field(generator, field, value):
    with pytest.raises(InvalidInput) as err:
        generator("1girl", _params(**{field: value}))
    assert err.value.field == field


def test_empty_prompt_is_refused(generator):
    with pytest.raises(InvalidInput, match="prompt"):
        generator("   ", FAST)


def test_a_failing_runner_becomes_a_stage_error_with_its_name(tiny_sdxl_onnx, onnx_runners):
    from sotai.diffusion import SdxlGenerator

    def broken(_inputs):
        raise RuntimeError("out of memory")

    gen = SdxlGenerator(tiny_sdxl_onnx["components"], {**onnx_runners, "unet": broken})
    with pytest.raises(StageError) as err:
        gen("1girl", FAST)
    assert err.value.stage == "unet" and "out of memory" in str(err.value)


def test_batches_larger_than_max_batch_are_split(tiny_sdxl_onnx, onnx_runners, generator):
    from sotai.diffusion import SdxlGenerator

    sizes = []

    def counting_unet(inputs):
        sizes.append(len(inputs["sample"]))
        return onnx_runners["unet"](inputs)

    small = SdxlGenerator(tiny_sdxl_onnx["components"], {**onnx_runners, "unet": counting_unet}, max_batch=4)
    result = small("1girl", _params(num_images=3))
    assert sizes and max(sizes) <= 4
    reference = generator("1girl", _params(num_images=3))
    for a, b in zip(result.images, reference.images):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_prompt_beyond_forty_chunks_is_refused_naming_the_limit(generator):
    with pytest.raises(InvalidInput, match="at most 3000 CLIP tokens") as err:
        generator("桜 " * 1100, FAST)  # 2200 characters, but three byte-level tokens per kanji
    assert err.value.field == "prompt"


def test_should_stop_is_asked_before_every_step_and_finish_decodes_the_latents_as_they_are(generator):
    asked, steps = [], []
    full = generator("1girl", _params(steps=6), lambda i, n, p: steps.append(i), lambda i: asked.append(i))
    assert asked == list(range(7))  # before steps 0..5, then before the decode
    steps.clear()
    early = generator("1girl", _params(steps=6), lambda i, n, p: steps.append(i), lambda i: "finish" if i == 2 else None)
    assert steps == [1, 2]  # two steps painted, the loop ended at the third
    assert len(early.images) == 1 and not np.array_equal(early.images[0], full.images[0])


def test_a_stop_hook_that_raises_abandons_the_request(generator):
    class Gone(Exception):
        pass

    def hook(step):
        if step == 3:
            raise Gone()

    steps = []
    with pytest.raises(Gone):
        generator("1girl", _params(steps=6), lambda i, n, p: steps.append(i), hook)
    assert steps == [1, 2, 3]
