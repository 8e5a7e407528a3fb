"""The exported graphs: names SDXL's loop needs, every varying axis dynamic, batch first everywhere."""

from __future__ import annotations

import json

import numpy as np

from sotai.diffusion.components import GRAPHS, Manifest


def test_export_writes_the_four_graphs_and_the_components(tiny_sdxl_onnx):
    for graph in GRAPHS:
        assert tiny_sdxl_onnx[graph].name == "model.onnx" and tiny_sdxl_onnx[graph].is_file()
    components = tiny_sdxl_onnx["components"]
    for rel in ("tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer_2/vocab.json",
                "scheduler/scheduler_config.json", "vae/config.json", "model_index.json", "sotai_diffusion.json"):
        assert (components / rel).is_file(), rel


def test_text_encoders_expose_the_penultimate_hidden_state_and_the_pooled_output(tiny_sdxl_onnx, tiny_sdxl):
    m = Manifest.load(tiny_sdxl_onnx["components"])
    layers = json.loads((tiny_sdxl / "text_encoder" / "config.json").read_text())["num_hidden_layers"]
    assert m.text_encoder_hidden == f"hidden_states.{layers - 1}"
    assert m.text_encoder_2_hidden in m.io["text_encoder_2"]["outputs"]
    assert m.text_encoder_2_pooled == "text_embeds" and "text_embeds" in m.io["text_encoder_2"]["outputs"]
    assert m.io["text_encoder"]["inputs"] == {"input_ids": ["int64", [-1, -1]]}


def test_unet_and_vae_have_dynamic_batch_height_width_and_a_batched_timestep(tiny_sdxl_onnx):
    io = Manifest.load(tiny_sdxl_onnx["components"]).io
    unet = io["unet"]["inputs"]
    assert list(unet) == ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]
    assert unet["sample"][1] == [-1, 4, -1, -1]
    assert unet["timestep"][1] == [-1, 1]  # Triton needs a batch axis and one more dim on every input
    assert unet["encoder_hidden_states"][1][:2] == [-1, -1]  # long prompts: any number of 77-token chunks
    assert unet["time_ids"][1] == [-1, 6]
    assert io["vae_decoder"]["inputs"]["latent_sample"][1] == [-1, 4, -1, -1]
    assert io["vae_decoder"]["outputs"]["sample"][1] == [-1, 3, -1, -1]


def test_the_exported_unet_matches_pytorch_at_another_size_and_batch(tiny_sdxl, onnx_runners):
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet").eval()
    rng = np.random.default_rng(0)
    batch, h, w = 3, 96, 64  # optimum traced at another shape; this proves the axes are really dynamic
    inputs = {
        "sample": rng.standard_normal((batch, 4, h, w), dtype=np.float32),
        "timestep": np.array([[999.0], [500.0], [1.0]], dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((batch, 154, 64), dtype=np.float32),
        "text_embeds": rng.standard_normal((batch, 32), dtype=np.float32),
        "time_ids": np.tile(np.array([[768, 512, 0, 0, 768, 512]], dtype=np.float32), (batch, 1)),
    }
    got = onnx_runners["unet"](inputs)["out_sample"]
    with torch.no_grad():
        want = unet(
            torch.from_numpy(inputs["sample"]), torch.from_numpy(inputs["timestep"][:, 0]),
            torch.from_numpy(inputs["encoder_hidden_states"]),
            added_cond_kwargs={"text_embeds": torch.from_numpy(inputs["text_embeds"]),
                               "time_ids": torch.from_numpy(inputs["time_ids"])},
        ).sample.numpy()
    assert got.shape == (batch, 4, h, w)
    np.testing.assert_allclose(got, want, atol=1e-4)


# Triton 24.10's onnxruntime backend is onnxruntime 1.19: ONNX IR version <= 10, default-domain opset <= 21.
TRITON_2410_MAX_IR, TRITON_2410_MAX_OPSET = 10, 21


def test_graphs_load_in_the_gpu_images_onnxruntime_backend(tiny_sdxl_onnx):
    import onnx

    for graph in GRAPHS:
        model = onnx.load(str(tiny_sdxl_onnx[graph]), load_external_data=False)
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        assert model.ir_version <= TRITON_2410_MAX_IR and opset <= TRITON_2410_MAX_OPSET, (graph, model.ir_version, opset)
