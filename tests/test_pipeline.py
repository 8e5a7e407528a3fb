"""The walking skeleton: Japanese text -> tags -> image through the real Triton ensemble."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from sotai.client import GenerateRequest
from sotai.diffusion.png import decode_png
from sotai.contracts import ONNX_MODELS, PIPELINE_CONTRACTS
from sotai.params import GenerationParams

SCENE = "銀髪の少女が夜の桜の下で微笑んでいる"
FAST = dict(steps=2, width=512, height=512)


def pixel_diff(a: bytes, b: bytes) -> float:
    """Mean absolute pixel difference (0..255) of two PNGs; their bytes always differ by the parameters chunk."""
    return float(abs(decode_png(a).astype(int) - decode_png(b).astype(int)).mean())


def test_every_model_is_ready(triton):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(triton.http_url)
    for name in (*PIPELINE_CONTRACTS, *ONNX_MODELS):
        assert client.is_model_ready(name), f"{name} is not READY"


def test_japanese_text_becomes_tags_and_a_png_of_the_requested_size(client, out_dir):
    result = client.generate(GenerateRequest(SCENE, GenerationParams(seed=7, width=512, height=640, steps=2)))
    assert result.tags, "no tags came back"
    assert all({"tag", "score", "category", "reason"} <= set(t) for t in result.tags)
    assert result.prompt
    assert result.seed == 7
    assert len(result.images) == 1
    image = Image.open(io.BytesIO(result.images[0]))
    assert image.format == "PNG"
    assert image.size == (512, 640)
    (out_dir / "pipeline.png").write_bytes(result.images[0])


def test_the_same_seed_gives_identical_bytes(client):
    params = GenerationParams(seed=1234, **FAST)
    first = client.generate(GenerateRequest(SCENE, params))
    second = client.generate(GenerateRequest(SCENE, params))
    assert first.images == second.images
    assert first.prompt == second.prompt


def test_different_seeds_give_different_images(client):
    a = client.generate(GenerateRequest(SCENE, GenerationParams(seed=1, **FAST)))
    b = client.generate(GenerateRequest(SCENE, GenerationParams(seed=2, **FAST)))
    assert pixel_diff(a.images[0], b.images[0]) > 1.0


def test_random_seed_is_reported_and_reproduces_the_image(client):
    first = client.generate(GenerateRequest(SCENE, GenerationParams(seed=-1, **FAST)))
    assert 0 <= first.seed < 2**32
    again = client.generate(GenerateRequest(SCENE, GenerationParams(seed=first.seed, **FAST)))
    assert again.images == first.images


@pytest.mark.parametrize("num_images", [2])
def test_several_images_per_request(client, num_images):
    result = client.generate(GenerateRequest(SCENE, GenerationParams(seed=3, num_images=num_images, **FAST)))
    assert len(result.images) == num_images
    assert pixel_diff(result.images[0], result.images[1]) > 1.0


def test_animagine_defaults_can_be_turned_off_through_the_ensemble(client):
    on = client.generate(GenerateRequest(SCENE, GenerationParams(seed=5, **FAST)))
    off = client.generate(GenerateRequest(SCENE, GenerationParams(seed=5, quality_tags=False,
                                                                  default_negative=False, **FAST)))
    assert on.route == off.route == "sotai"
    on_text = Image.open(io.BytesIO(on.images[0])).text["parameters"]
    off_text = Image.open(io.BytesIO(off.images[0])).text["parameters"]
    assert "masterpiece, best quality" in on_text
    assert "masterpiece" not in off_text
    assert pixel_diff(on.images[0], off.images[0]) > 0.1


def test_weighted_tags_go_to_dart_plain_and_reach_the_painter_weighted(client):
    tags = ("1girl", "(silver_hair, red_eyes:1.2)", "[night]")
    result = client.generate(GenerateRequest(tags=tags, params=GenerationParams(seed=9, quality_tags=False, **FAST)))
    assert result.route == "dart > diffusion"
    plain = {t["tag"] for t in result.tags}
    assert {"silver hair", "red eyes", "night"} <= plain
    assert not any(":1.2" in t or "(silver" in t or "[night" in t for t in plain)  # Dart saw them plain
    assert "(silver hair, red eyes:1.2)" in result.prompt and "[night]" in result.prompt
    painted = Image.open(io.BytesIO(result.images[0])).text["parameters"]
    assert painted.startswith(result.prompt)  # the painter got the weighted prompt
