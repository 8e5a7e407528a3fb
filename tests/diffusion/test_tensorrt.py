"""TensorRT engine specs: one profile per graph covering every size, batch and prompt length allowed."""

from __future__ import annotations

from sotai.diffusion.components import GRAPHS, Manifest
from sotai.diffusion.tensorrt import build_engines, engine_specs


def specs(tiny_sdxl_onnx, tmp_path):
    manifest = Manifest.load(tiny_sdxl_onnx["components"])
    return {s.graph: s for s in engine_specs({g: tiny_sdxl_onnx[g] for g in GRAPHS}, manifest,
                                             {g: tmp_path / g / "model.plan" for g in GRAPHS})}


def test_profiles_cover_every_allowed_request(tiny_sdxl_onnx, tmp_path):
    s = specs(tiny_sdxl_onnx, tmp_path)
    unet = s["unet"]
    assert unet.min["sample"] == (1, 4, 64, 64)  # 512 px
    assert unet.max["sample"] == (16, 4, 256, 256)  # 2048 px, CFG pair x 8 images
    assert unet.opt["sample"] == (2, 4, 128, 128)  # 1024 px, one image with CFG
    assert unet.max["encoder_hidden_states"] == (16, 40 * 77, 64)  # the longest prompt allowed
    assert set(unet.min) == set(Manifest.load(tiny_sdxl_onnx["components"]).io["unet"]["inputs"])
    assert s["text_encoder"].max == {"input_ids": (16, 77)}
    assert s["vae_decoder"].max["latent_sample"] == (8, 4, 256, 256)
    assert not unet.fp16  # the tiny export is fp32


def test_trtexec_command_names_every_shape(tiny_sdxl_onnx, tmp_path):
    cmd = specs(tiny_sdxl_onnx, tmp_path)["unet"].trtexec_command()
    assert cmd[0] == "trtexec" and f"--saveEngine={tmp_path / 'unet' / 'model.plan'}" in cmd
    assert "--minShapes=sample:1x4x64x64,timestep:1x1,encoder_hidden_states:1x77x64,text_embeds:1x32,time_ids:1x6" in cmd


def test_without_tensorrt_the_commands_are_printed_and_nothing_is_built(tiny_sdxl_onnx, tmp_path):
    import shutil

    repo = tmp_path / "repository"
    for g in GRAPHS:
        (repo / g / "1").mkdir(parents=True)
        shutil.copy(tiny_sdxl_onnx[g], repo / g / "1" / "model.onnx")
    shutil.copytree(tiny_sdxl_onnx["components"], repo / "diffusion" / "1" / "components")
    lines: list[str] = []
    built = build_engines(repo, builder="print", echo=lines.append)
    assert built == {g: None for g in GRAPHS}
    assert len(lines) == 1 + len(GRAPHS) and all(line.startswith("trtexec --onnx=") for line in lines[1:])
    assert not list(repo.rglob("model.plan"))
