"""bench/gpu_loop.py, the script a session lent a GPU runs once (issue 11), run here on CPU on the tiny
snapshot: our loop over device-tensor runners (torch modules) paints what diffusers paints on the same
modules, so that the figures it prints on the GPU compare like with like."""

from __future__ import annotations

import importlib.util
import json

from sotai.settings import PROJECT_ROOT

from .reference import MAX_MEAN_ABS_DIFF


def _script():
    spec = importlib.util.spec_from_file_location("gpu_loop", PROJECT_ROOT / "bench" / "gpu_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_script_runs_on_cpu_and_our_loop_paints_what_diffusers_paints(tiny_sdxl, tmp_path, capsys):
    code = _script().main(["run", str(tiny_sdxl), "--out", str(tmp_path), "--device", "cpu",
                           "--width", "512", "--height", "512", "--steps", "3", "--unet-repeats", "1"])
    assert code == 0
    figures = json.loads((tmp_path / "gpu_loop.json").read_text())
    assert figures == json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["dtype"] == "fp32" and figures["steps"] == 3
    assert figures["unet_ms_per_call"] > 0 and figures["ours_s"] > 0 and figures["diffusers_s"] > 0
    assert figures["ours_pixel_std"] > 1.0  # a picture, not a blank
    assert figures["mean_abs_diff"] <= MAX_MEAN_ABS_DIFF


def test_the_kit_holds_the_real_configs_and_tokenizers(tmp_path):
    from transformers import CLIPTokenizer

    kit = _script().write_kit(tmp_path / "kit")
    unet = json.loads((kit / "unet" / "config.json").read_text())
    assert unet["cross_attention_dim"] == 2048 and unet["addition_time_embed_dim"] == 256
    assert json.loads((kit / "vae" / "config.json").read_text())["force_upcast"] is False  # the fp16-safe VAE
    tokenizer_2 = CLIPTokenizer.from_pretrained(kit / "tokenizer_2")
    assert len(tokenizer_2) == 49408 and tokenizer_2.pad_token == "!"
    assert not list(kit.rglob("*.safetensors"))
