"""`sotai bench diffusion [--json]`: the diffusion stage's speed on this machine.

1. Per-step UNet latency, ONNX Runtime vs PyTorch eager, for the tiny UNet and a mid-size one
   (SDXL's layout at 1/5 of its width: attention at the two lower levels, 2 layers per block),
   on one CFG pair (batch 2) at 512x512. Random weights; the snapshots and exports are cached under
   <models_dir>/bench/diffusion/ so a rerun only measures.
2. End to end, the same generation (tiny profile, 512x768, 4 steps, CFG) through Triton's
   `diffusion` model (BLS -> four ONNX models) and through SdxlGenerator in-process over the same
   graphs: their ratio is the serving overhead (target <= 1.10). Triton is the embedded server on
   the tiny profile's repository (`sotai export` builds it when missing), loading only the five
   diffusion models.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from sotai.diffusion.components import GRAPHS
from sotai.diffusion.tiny import tiny_unet_config
from sotai.params import GenerationParams, infer_inputs, request_rows

UNET_SIZE = (512, 512)
UNET_BATCH = 2  # the CFG pair
UNET_CONFIGS = {
    "tiny": tiny_unet_config(),
    "mid": tiny_unet_config(block_out_channels=(64, 128, 256), cross_attention_levels=(False, True, True),
                            layers_per_block=2),
}
E2E = GenerationParams(steps=4, width=512, height=768, seed=1, cfg_scale=7.0, num_images=1)
E2E_PROMPT = "1girl, silver hair, cherry blossoms, night, smile"


def _median(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, thread pools, first-call graph optimisation
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_snapshot(root: Path, name: str) -> Path:
    """The random-weight pipeline with UNet config `name`, exported to ONNX once (cached)."""
    from sotai.diffusion import build_tiny_sdxl, export_sdxl_onnx

    out = root / name
    key = json.dumps({"unet": UNET_CONFIGS[name], "v": 1}, sort_keys=True, default=list)
    stamp = out / "stamp.json"
    if not (stamp.is_file() and stamp.read_text() == key):
        build_tiny_sdxl(out / "snapshot", unet_config=UNET_CONFIGS[name])
        export_sdxl_onnx(out / "snapshot", out / "onnx", model_name=f"bench-{name}")
        stamp.write_text(key)
    return out


def unet_inputs(config: dict) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    w, h = UNET_SIZE
    pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    return {
        "sample": rng.standard_normal((UNET_BATCH, config["in_channels"], h // 8, w // 8), dtype=np.float32),
        "timestep": np.full((UNET_BATCH, 1), 500.0, dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((UNET_BATCH, 77, config["cross_attention_dim"]), dtype=np.float32),
        "text_embeds": rng.standard_normal((UNET_BATCH, pooled), dtype=np.float32),
        "time_ids": np.tile(np.array([[h, w, 0, 0, h, w]], dtype=np.float32), (UNET_BATCH, 1)),
    }


def time_unet(out: Path, config: dict, repeats: int) -> tuple[float, float]:
    """(ONNX seconds, PyTorch seconds) per UNet call, medians; also checks both agree."""
    import torch
    from diffusers import UNet2DConditionModel

    from sotai.onnx_runner import OnnxRunner

    inputs = unet_inputs(config)
    runner = OnnxRunner(out / "onnx" / "unet" / "model.onnx", providers=["CPUExecutionProvider"])
    unet = UNet2DConditionModel.from_pretrained(out / "snapshot" / "unet").eval()
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}

    def torch_step():
        with torch.inference_mode():
            return unet(t["sample"], t["timestep"][:, 0], t["encoder_hidden_states"],
                        added_cond_kwargs={"text_embeds": t["text_embeds"], "time_ids": t["time_ids"]}).sample

    diff = np.abs(runner(inputs)["out_sample"] - torch_step().numpy()).max()
    assert diff < 1e-3, f"ONNX and PyTorch UNets disagree by {diff}"
    return _median(lambda: runner(inputs), repeats), _median(torch_step, repeats)


def time_end_to_end(settings, repeats: int) -> tuple[float, float]:
    """(Triton seconds, in-process seconds) for the E2E generation, medians; same PNG bytes checked."""
    import tritonclient.grpc as grpc

    from sotai.diffusion import SdxlGenerator
    from sotai.export.build import ExportPlan, export_profile
    from sotai.onnx_runner import OnnxRunner
    from sotai.serving.server import TritonServer, free_port

    repo = export_profile(ExportPlan.from_settings(settings, "tiny"))
    local = SdxlGenerator(repo / "diffusion" / "1" / "components",
                          {g: OnnxRunner(repo / g / "1" / "model.onnx", providers=["CPUExecutionProvider"]) for g in GRAPHS})
    inputs = infer_inputs(grpc, request_rows([(E2E_PROMPT, E2E)]))
    log = settings.models_dir / "bench" / "diffusion" / "tritonserver.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), log_file=log,
                          extra_args=["--model-control-mode=explicit",
                                      *(f"--load-model={m}" for m in (*GRAPHS, "diffusion"))])
    with server:
        client = grpc.InferenceServerClient(server.grpc_url)
        served = client.infer("diffusion", inputs).as_numpy("IMAGE")[0][0]
        assert served == local(E2E_PROMPT, E2E).pngs[0], "Triton and in-process images differ"
        triton_s = _median(lambda: client.infer("diffusion", inputs), repeats)
    # In-process after the server stopped, so neither run shares the cores with the other.
    local_s = _median(lambda: local(E2E_PROMPT, E2E), repeats)
    return triton_s, local_s


def run(settings, *, repeats: int = 5, triton: bool = True) -> dict:
    import torch
    from tqdm.auto import tqdm

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)  # onnxruntime's default intra-op pool is one thread per core too
    root = settings.models_dir / "bench" / "diffusion"
    result: dict = {"threads": threads, "unet_size": f"{UNET_SIZE[0]}x{UNET_SIZE[1]}", "unet_batch": UNET_BATCH}
    for name in tqdm(UNET_CONFIGS, desc="bench diffusion: UNets", unit="config"):
        onnx_s, torch_s = time_unet(bench_snapshot(root, name), UNET_CONFIGS[name], repeats)
        result[f"unet_step_onnx_ms_{name}"] = round(onnx_s * 1000, 2)
        result[f"unet_step_torch_ms_{name}"] = round(torch_s * 1000, 2)
    # The headline numbers are the mid-size UNet's: closer to SDXL's balance of convolutions and attention.
    result["unet_step_onnx_ms"] = result["unet_step_onnx_ms_mid"]
    result["unet_step_torch_ms"] = result["unet_step_torch_ms_mid"]
    result["triton_over_inprocess"] = None
    if triton:
        triton_s, local_s = time_end_to_end(settings, max(3, repeats // 2))
        result.update(e2e_triton_ms=round(triton_s * 1000, 1), e2e_inprocess_ms=round(local_s * 1000, 1),
                      triton_over_inprocess=round(triton_s / local_s, 3))
    return result


def print_report(r: dict) -> None:
    print(f"UNet step, batch {r['unet_batch']} at {r['unet_size']}, {r['threads']} threads (median ms):")
    for name in UNET_CONFIGS:
        onnx_ms, torch_ms = r[f"unet_step_onnx_ms_{name}"], r[f"unet_step_torch_ms_{name}"]
        print(f"  {name:5s} ONNX Runtime {onnx_ms:9.2f}   PyTorch {torch_ms:9.2f}   torch/onnx {torch_ms / onnx_ms:5.2f}x")
    if r["triton_over_inprocess"] is not None:
        print(f"End to end ({E2E.width}x{E2E.height}, {E2E.steps} steps, CFG): Triton {r['e2e_triton_ms']:.1f} ms, "
              f"in-process {r['e2e_inprocess_ms']:.1f} ms, ratio {r['triton_over_inprocess']:.3f} (target <= 1.10)")


def register(subparsers) -> None:
    p = subparsers.add_parser("diffusion")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the numbers")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    p.add_argument("--no-triton", action="store_true", help="only the UNet comparison")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from sotai.settings import get_settings

    result = run(get_settings(), repeats=args.repeats, triton=not args.no_triton)
    print_report(result)
    if args.json:
        print(json.dumps(result))
    return 0
