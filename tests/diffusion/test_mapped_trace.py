"""The large-part export path (a UNet over memory-mapped fp32 weights), run on the tiny UNet.

Real SDXL takes it (2.6 B parameters); here the threshold is lowered so the tiny UNet does, and the
graph must compute what PyTorch computes on the snapshot's own weights, at a size other than the
32x32 the trace ran at (every axis dynamic).
"""

from __future__ import annotations

import numpy as np
import torch


def test_unet_traced_over_mapped_weights_matches_pytorch(tiny_sdxl, tmp_path, monkeypatch):
    import onnxruntime as ort
    from diffusers import UNet2DConditionModel

    import sotai.diffusion.export as export

    monkeypatch.setattr(export, "MAPPED_TRACE_MIN_PARAMETERS", 1)
    graph = tmp_path / "unet"
    assert export.export_part(tiny_sdxl, "unet", graph, vae_source=tiny_sdxl / "vae", scratch=tmp_path / "w")
    assert not (tmp_path / "w").exists(), "the fp32 scratch copy is removed"

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet").eval()
    c = unet.config
    rng = np.random.default_rng(0)
    feeds = {
        "sample": rng.standard_normal((2, c.in_channels, 24, 16)).astype(np.float32),
        "timestep": np.array([[500.0], [20.0]], dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((2, 154, c.cross_attention_dim)).astype(np.float32),
        "text_embeds": rng.standard_normal(
            (2, c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim)).astype(np.float32),
        "time_ids": np.array([[192, 128, 0, 0, 192, 128]] * 2, dtype=np.float32),
    }
    session = ort.InferenceSession(str(graph / "model.onnx"), providers=["CPUExecutionProvider"])
    ours = session.run(["out_sample"], feeds)[0]
    with torch.no_grad():
        t = {k: torch.from_numpy(v) for k, v in feeds.items()}
        reference = unet(t["sample"], t["timestep"].reshape(-1), t["encoder_hidden_states"],
                         added_cond_kwargs={"text_embeds": t["text_embeds"], "time_ids": t["time_ids"]}).sample.numpy()
    # fp32 on both sides: measured 1.6e-6; a weight mapped to the wrong tensor or offset is O(1).
    assert np.abs(ours - reference).max() < 1e-4
