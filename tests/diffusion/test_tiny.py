"""The tiny stand-in pipeline: SDXL's structure, tiny, reproducible, loadable by diffusers."""

from __future__ import annotations

import json

from sotai.diffusion.tiny import build_tiny_sdxl


def test_tiny_snapshot_has_sdxl_structure(tiny_sdxl):
    index = json.loads((tiny_sdxl / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder"][1] == "CLIPTextModel" and index["text_encoder_2"][1] == "CLIPTextModelWithProjection"
    unet = json.loads((tiny_sdxl / "unet" / "config.json").read_text())
    te2 = json.loads((tiny_sdxl / "text_encoder_2" / "config.json").read_text())
    assert unet["addition_embed_type"] == "text_time"
    # pooled text embedding + 6 Fourier-embedded time ids, as the UNet's add_embedding expects
    assert unet["projection_class_embeddings_input_dim"] == te2["projection_dim"] + 6 * unet["addition_time_embed_dim"]
    assert not list(tiny_sdxl.rglob("*.bin")), "weights must be safetensors"
    for tok in ("tokenizer", "tokenizer_2"):
        assert json.loads((tiny_sdxl / tok / "tokenizer_config.json").read_text())["model_max_length"] == 77


def test_tiny_snapshot_is_deterministic(tiny_sdxl, tmp_path):
    again = build_tiny_sdxl(tmp_path / "again")
    for f in sorted(tiny_sdxl.rglob("*.safetensors")) + sorted(tiny_sdxl.rglob("vocab.json")):
        assert (again / f.relative_to(tiny_sdxl)).read_bytes() == f.read_bytes(), f
