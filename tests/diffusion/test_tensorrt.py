"""TensorRT: profiles a GPU can hold and that cover the presets, engines cached by their inputs' hash,
no silent fallback without a builder, configs that load in Triton, and the loop keeping to the engines."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sotai.diffusion.components import COMPONENTS_DIR, GRAPHS, Manifest
from sotai.diffusion.tensorrt import (
    IMAGE_TENSORRT_VERSION, LIMITS_FILE, TENSORRT_LIMITS, EngineLimits, SizeProfile, _tensorrt_module,
    activation_maxima, build_engines, engine_specs, require_builder,
)
from sotai.errors import InvalidInput, SotaiError
from sotai.limits import SIZE_PRESETS
from sotai.params import GenerationParams

NO_TENSORRT = _tensorrt_module() is None and shutil.which("trtexec") is None


def specs(tiny_sdxl_onnx, tmp_path, limits=TENSORRT_LIMITS):
    manifest = Manifest.load(tiny_sdxl_onnx["components"])
    return {s.graph: s for s in engine_specs({g: tiny_sdxl_onnx[g] for g in GRAPHS}, manifest,
                                             {g: tmp_path / g / "model.plan" for g in GRAPHS}, limits)}


def test_profiles_are_sized_to_four_images_three_chunks_and_the_presets(tiny_sdxl_onnx, tmp_path):
    s = specs(tiny_sdxl_onnx, tmp_path)
    unet = s["unet"]
    assert len(unet.profiles) == 3
    assert unet.largest("sample") == (8, 4, 1536 // 8, 1536 // 8)  # CFG pair x 4 images; the tall/wide edges
    assert unet.largest("encoder_hidden_states") == (8, 3 * 77, 64)
    assert unet.opt["sample"] == (2, 4, 128, 128)  # 1024x1024, one image with CFG
    assert set(unet.min) == set(Manifest.load(tiny_sdxl_onnx["components"]).io["unet"]["inputs"])
    assert s["text_encoder"].max == {"input_ids": (6, 77)}  # prompt + negative, 3 chunks each
    assert s["vae_decoder"].largest("latent_sample")[0] == 1  # one image per decode
    assert not unet.fp16  # the tiny export is fp32
    # Every preset fits one profile's box, in latents as TensorRT sees them.
    for name, (w, h) in SIZE_PRESETS.items():
        assert any(lo["sample"][2] <= h // 8 <= hi["sample"][2] and lo["sample"][3] <= w // 8 <= hi["sample"][3]
                   for lo, _, hi in unet.profiles), name


def test_activation_maxima_follow_the_limits_and_stay_near_the_presets(tiny_sdxl_onnx, tmp_path):
    unet = activation_maxima(specs(tiny_sdxl_onnx, tmp_path)["unet"])
    largest_preset = max(w * h for w, h in SIZE_PRESETS.values()) // 64  # latent pixels of one image
    # Each profile's box is at most ~1.4x the presets it serves (the old single box: 6.5x at 16 rows).
    assert unet["latent_pixels"] == 8 * max(s.width[1] * s.height[1] for s in TENSORRT_LIMITS.sizes) // 64
    assert unet["latent_pixels"] <= 1.4 * 8 * largest_preset
    assert unet["cross_attention"] == unet["latent_pixels"] * 3 * 77
    assert unet["latent_pixels"] * 6 < 16 * 256 * 256  # the old profile: batch 16 x 2048 x 2048
    two = activation_maxima(specs(tiny_sdxl_onnx, tmp_path, EngineLimits(max_images=2, max_chunks=1))["unet"])
    assert two["latent_pixels"] * 2 == unet["latent_pixels"] and two["cross_attention"] * 6 == unet["cross_attention"]
    vae = activation_maxima(specs(tiny_sdxl_onnx, tmp_path)["vae_decoder"])
    assert vae["image_pixels"] == max(s.width[1] * s.height[1] for s in TENSORRT_LIMITS.sizes)


def test_trtexec_command_names_every_profile(tiny_sdxl_onnx, tmp_path):
    cmd = specs(tiny_sdxl_onnx, tmp_path)["unet"].trtexec_command()
    assert cmd[0] == "trtexec" and f"--saveEngine={tmp_path / 'unet' / 'model.plan'}" in cmd
    assert sum(c.startswith("--minShapes=") for c in cmd) == 3
    assert "--minShapes=sample:1x4x112x112,timestep:1x1,encoder_hidden_states:1x77x64,text_embeds:1x32,time_ids:1x6" in cmd


@pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT is installed here")
def test_without_a_builder_the_export_fails_before_any_work_saying_what_to_run(tmp_path, monkeypatch, capsys):
    from sotai.cli import main

    with pytest.raises(SotaiError) as err:
        require_builder()
    message = str(err.value)
    assert f"TensorRT {IMAGE_TENSORRT_VERSION}" in message and "docker compose run --rm export" in message
    assert "trtexec" in message and "TARGET=gpu" in message
    from sotai.settings import get_settings

    monkeypatch.setenv("SOTAI_MODELS_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    monkeypatch.setattr("sotai.settings.get_settings", get_settings)  # restored (and cleared) below
    try:
        rc = main(["export", "--profile", "tiny", "--target", "tensorrt"])
    finally:
        get_settings.cache_clear()
    assert rc == 1
    assert "docker compose run --rm export" in capsys.readouterr().err
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("*.onnx"))


def test_trtexec_banner_gives_the_version_checked_against_the_image():
    from sotai.diffusion.tensorrt import trtexec_version

    assert trtexec_version("&&&& RUNNING TensorRT.trtexec [TensorRT v100500] # trtexec --help") == "10.5.0"
    assert trtexec_version("no banner") == "unknown"


@pytest.fixture
def repository(tiny_sdxl_onnx, tmp_path):
    repo = tmp_path / "repository"
    for g in GRAPHS:
        (repo / g / "1").mkdir(parents=True)
        shutil.copy(tiny_sdxl_onnx[g], repo / g / "1" / "model.onnx")
    shutil.copytree(tiny_sdxl_onnx["components"], repo / "diffusion" / "1" / COMPONENTS_DIR)
    return repo


class RecordingBuilder:
    """Stands in for TensorRT, which cannot run here: records what the cache decided to build.
    (The plans it writes are placeholders; nothing here loads them.)"""

    def __init__(self):
        self.built: list[str] = []

    def __call__(self, spec, workspace_mib):
        self.built.append(spec.graph)
        spec.plan.write_bytes(b"plan for " + spec.graph.encode())
        return None


def test_engines_are_built_once_and_rebuilt_only_when_their_inputs_change(repository):
    builder = RecordingBuilder()
    quiet = [].append

    def run(version=IMAGE_TENSORRT_VERSION, limits=TENSORRT_LIMITS):
        builder.built.clear()
        build_engines(repository, build=builder, tensorrt_version=version, limits=limits, echo=quiet)
        return sorted(builder.built)

    assert run() == sorted(GRAPHS)
    assert run() == []  # the second `docker compose up`
    unet_onnx = repository / "unet" / "1" / "model.onnx"
    unet_onnx.write_bytes(unet_onnx.read_bytes() + b"\0")  # another export of the UNet, same size order
    assert run() == ["unet"]
    (repository / "vae_decoder" / "1" / "model.plan").unlink()
    assert run() == ["vae_decoder"]
    assert run(limits=EngineLimits(max_images=2)) == ["unet"]  # only the UNet's profiles depend on images
    assert run(version="10.6.0", limits=EngineLimits(max_images=2)) == sorted(GRAPHS)
    (repository / "text_encoder" / "1" / "model.plan.key").write_text("stale\n")
    assert run(version="10.6.0", limits=EngineLimits(max_images=2)) == ["text_encoder"]
    written = EngineLimits.load(repository / "diffusion" / "1" / COMPONENTS_DIR)
    assert written == EngineLimits(max_images=2)


def test_a_builder_that_writes_nothing_is_an_error(repository):
    with pytest.raises(SotaiError, match="wrote no plan"):
        build_engines(repository, build=lambda spec, ws: None, tensorrt_version=IMAGE_TENSORRT_VERSION, echo=[].append)


def test_tensorrt_configs_take_the_engines_batch_and_every_profile(repository):
    from sotai.export.repository import write_onnx_model

    build_engines(repository, build=RecordingBuilder(), tensorrt_version=IMAGE_TENSORRT_VERSION, echo=[].append)
    for g in GRAPHS:
        write_onnx_model(repository, g, target="tensorrt")
    unet = (repository / "unet" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in unet and "max_batch_size: 8" in unet
    assert 'instance_group [ { count: 1 kind: KIND_GPU profile: [ "0", "1", "2" ] } ]' in unet
    vae = (repository / "vae_decoder" / "config.pbtxt").read_text()
    assert "max_batch_size: 1" in vae
    assert "max_batch_size: 6" in (repository / "text_encoder" / "config.pbtxt").read_text()
    (repository / "unet" / "1" / "model.plan").unlink()
    with pytest.raises(SotaiError, match="TensorRT engine not usable"):  # no silent onnxruntime fallback
        write_onnx_model(repository, "unet", target="tensorrt")


def test_the_loop_keeps_to_the_engines_limits(repository, onnx_runners):
    from sotai.diffusion import SdxlGenerator

    limits = EngineLimits(max_images=2, max_chunks=1,
                          sizes=(SizeProfile("small", (512, 576), (512, 640), (512, 512)),))
    components = repository / "diffusion" / "1" / COMPONENTS_DIR
    (components / LIMITS_FILE).write_text(limits.to_json())
    rows = {"unet": [], "vae_decoder": []}

    def counting(graph):
        def run(inputs):
            rows[graph].append(len(next(iter(inputs.values()))))
            return onnx_runners[graph](inputs)
        return run

    gen = SdxlGenerator(components, {**onnx_runners, "unet": counting("unet"), "vae_decoder": counting("vae_decoder")})
    p = GenerationParams(steps=2, width=512, height=640, seed=3, num_images=2, quality_tags=False, default_negative=False)
    assert len(gen("1girl", p).images) == 2
    assert max(rows["unet"]) <= 4 and rows["vae_decoder"] == [1, 1]  # the VAE engine takes one image
    with pytest.raises(InvalidInput) as err:
        gen("1girl", GenerationParams(**{**p.__dict__, "width": 1024, "height": 1024}))
    assert err.value.field == "width" and "512-576 x 512-640" in str(err.value)
    for hires, field in (({"hr_scale": 1.5}, "hr_scale"), ({"hr_resize_x": 1024}, "hr_resize_x"),
                         ({"hr_resize_y": 1280}, "hr_resize_y")):  # the hires pass's size, named by what set it
        with pytest.raises(InvalidInput) as err:
            gen("1girl", GenerationParams(**{**p.__dict__, "enable_hr": True, **hires}))
        assert err.value.field == field and "512-576 x 512-640" in str(err.value)
    with pytest.raises(InvalidInput) as err:
        gen("1girl", GenerationParams(**{**p.__dict__, "num_images": 3}))
    assert err.value.field == "num_images" and "at most 2" in str(err.value)
    with pytest.raises(InvalidInput) as err:
        gen(", ".join(["1girl, silver hair, red eyes"] * 20), p)
    assert err.value.field == "prompt" and "at most 75 CLIP tokens" in str(err.value)
    (components / LIMITS_FILE).unlink()  # the same repository served by onnxruntime: no extra limits
    free = SdxlGenerator(components, onnx_runners)
    for a, b in zip(free("1girl", p).images, gen("1girl", p).images):  # one decode per image: same picture
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
