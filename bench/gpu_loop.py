"""The GPU run issue 11 asks for: the SDXL-size UNet per step, and a whole generation through our
denoising loop on device tensors against diffusers' own pipeline on the same weights.

    python bench/gpu_loop.py kit out/gpu-kit                 # here: real SDXL configs + CLIP tokenizers, no weights
    python3 bench/gpu_loop.py run out/gpu-kit --out "$OUT"   # on the GPU machine (diffusers carried as a wheel)

`run` builds the four parts from the kit's configs with random weights (seeded) directly on the
device, in fp16 there, and shares the very same modules between `SdxlGenerator` (runners marked
`device_tensors`: torch in, torch out, as the BLS runner over DLPack) and diffusers'
`StableDiffusionXLPipeline`. It prints, and writes to --out/gpu_loop.json:
- the UNet alone: ms per call at batch 2 (one image with CFG) and width x height, peak GPU memory;
- one image end to end (--steps, default 30) through each, each timed after one short warm-up run:
  seconds, their ratio, and the mean absolute pixel difference (0..255) between the two pictures.

Nothing here is a test of the GPU; tests/diffusion/test_gpu_loop.py runs `run` on the tiny snapshot
on CPU (fp32) so that the script is known to work before a session spends its device minutes on it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

PROMPT = "1girl, silver hair, smile, cherry blossoms, night, outdoors"
NEGATIVE = "lowres, bad anatomy, bad hands, worst quality"
SEED = 0


# -- kit (on the development machine: needs open_clip_torch's BPE merges) -------------------------

def write_kit(dest: Path) -> Path:
    """Real SDXL configs (the fp16-safe VAE's, as the GPU export uses) and the real CLIP tokenizers."""
    from export.snapshots import CONFIGS, SDXL_PARTS, write_sdxl_layout

    write_sdxl_layout(CONFIGS / "sdxl", dest)
    for part in SDXL_PARTS:
        (dest / part).mkdir(exist_ok=True)
        source = CONFIGS / ("sdxl-vae-fp16-fix" if part == "vae" else f"sdxl/{part}")
        shutil.copy2(source / "config.json", dest / part / "config.json")
    return dest


# -- run (on the GPU machine) ---------------------------------------------------------------------

def build_parts(kit: Path, device: str, dtype) -> dict:
    """The four parts from their configs, random weights (seeded), made on the device in `dtype`."""
    import torch

    from export.snapshots import SDXL_PARTS, build_sdxl_part

    parts = {}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        for i, part in enumerate(SDXL_PARTS):
            torch.manual_seed(SEED + i)
            with torch.device(device):
                model = build_sdxl_part(json.loads((kit / part / "config.json").read_text()), part)
            parts[part] = model.eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(previous)
    return parts


def device_runners(parts: dict) -> dict:
    """Runners over the torch modules with the exported graphs' tensor names, on device tensors."""
    import torch

    def text(model):
        def run(inputs):
            out = model(inputs["input_ids"], output_hidden_states=True)
            named = {f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)}
            if getattr(out, "text_embeds", None) is not None:
                named["text_embeds"] = out.text_embeds
            return named
        return run

    def unet(inputs):
        sample = parts["unet"](inputs["sample"], inputs["timestep"].reshape(-1), inputs["encoder_hidden_states"],
                               added_cond_kwargs={"text_embeds": inputs["text_embeds"], "time_ids": inputs["time_ids"]})
        return {"out_sample": sample.sample}

    def vae_decoder(inputs):
        return {"sample": parts["vae"].decode(inputs["latent_sample"]).sample}

    runners = {"text_encoder": text(parts["text_encoder"]), "text_encoder_2": text(parts["text_encoder_2"]),
               "unet": unet, "vae_decoder": vae_decoder}
    for name, run in runners.items():
        runners[name] = torch.inference_mode()(run)
        runners[name].device_tensors = True
    return runners


def write_components(kit: Path, parts: dict, dest: Path, dtype_name: str) -> Path:
    """The loop's components folder (what an export writes beside the graphs) for these modules."""
    from sotai.diffusion.components import Manifest
    from sotai.diffusion.export import copy_components

    copy_components(kit, dest)
    dt = "float16" if dtype_name == "fp16" else "float32"
    layers = {p: parts[p].config.num_hidden_layers for p in ("text_encoder", "text_encoder_2")}
    hidden = {p: {f"hidden_states.{i}": [dt, [-1, -1, -1]] for i in range(n + 1)} for p, n in layers.items()}
    unet = parts["unet"].config
    io = {
        "text_encoder": {"inputs": {"input_ids": ["int64", [-1, -1]]}, "outputs": hidden["text_encoder"]},
        "text_encoder_2": {"inputs": {"input_ids": ["int64", [-1, -1]]},
                           "outputs": {"text_embeds": [dt, [-1, -1]], **hidden["text_encoder_2"]}},
        # the timestep stays fp32, as the fp16 export keeps it (diffusers embeds it in fp32)
        "unet": {"inputs": {"sample": [dt, [-1, unet.in_channels, -1, -1]], "timestep": ["float32", [-1, 1]],
                            "encoder_hidden_states": [dt, [-1, -1, unet.cross_attention_dim]],
                            "text_embeds": [dt, [-1, -1]], "time_ids": [dt, [-1, 6]]},
                 "outputs": {"out_sample": [dt, [-1, unet.out_channels, -1, -1]]}},
        "vae_decoder": {"inputs": {"latent_sample": [dt, [-1, 4, -1, -1]]}, "outputs": {"sample": [dt, [-1, 3, -1, -1]]}},
    }
    Manifest(model_name="sotai-gpu-loop (random weights)", dtype=dtype_name,
             text_encoder_hidden=f"hidden_states.{layers['text_encoder'] - 1}",
             text_encoder_2_hidden=f"hidden_states.{layers['text_encoder_2'] - 1}",
             text_encoder_2_pooled="text_embeds", io=io).save(dest)
    return dest


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_unet(parts: dict, device: str, dtype, width: int, height: int, repeats: int) -> dict:
    """The UNet alone at batch 2 (one image with CFG), 77 tokens: ms per call after 3 warm-up calls."""
    import torch

    unet = parts["unet"]
    cfg = unet.config
    g = torch.Generator("cpu").manual_seed(SEED)
    sample = torch.randn(2, cfg.in_channels, height // 8, width // 8, generator=g).to(device, dtype)
    states = torch.randn(2, 77, cfg.cross_attention_dim, generator=g).to(device, dtype)
    embeds = torch.randn(2, cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim,
                         generator=g).to(device, dtype)
    time_ids = torch.tensor([[height, width, 0, 0, height, width]] * 2, device=device, dtype=dtype)
    t = torch.full((2,), 500.0, device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for _ in range(3):
            unet(sample, t, states, added_cond_kwargs={"text_embeds": embeds, "time_ids": time_ids})
        _sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            unet(sample, t, states, added_cond_kwargs={"text_embeds": embeds, "time_ids": time_ids})
        _sync(device)
    ms = (time.perf_counter() - started) * 1000 / repeats
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {"unet_ms_per_call": round(ms, 2), "unet_batch": 2, "unet_peak_gib": peak and round(peak, 2),
            "unet_parameters": sum(p.numel() for p in unet.parameters())}


def diffusers_pipeline(kit: Path, parts: dict):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    pipe = StableDiffusionXLPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"],
        tokenizer=CLIPTokenizer.from_pretrained(kit / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(kit / "tokenizer_2"), unet=parts["unet"],
        scheduler=EulerAncestralDiscreteScheduler.from_pretrained(kit / "scheduler"), add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(kit: Path, out: Path, device: str, dtype_name: str, width: int, height: int, steps: int,
        repeats: int) -> dict:
    import numpy as np
    import torch

    from sotai.diffusion.pipeline import SdxlGenerator
    from sotai.params import GenerationParams

    dtype = torch.float16 if dtype_name == "fp16" else torch.float32
    started = time.perf_counter()
    parts = build_parts(kit, device, dtype)
    figures = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
               "torch": torch.__version__, "dtype": dtype_name, "width": width, "height": height, "steps": steps,
               "build_s": round(time.perf_counter() - started, 1)}
    figures |= time_unet(parts, device, dtype, width, height, repeats)

    generator = SdxlGenerator(write_components(kit, parts, out / "components", dtype_name),
                              device_runners(parts), device=device)
    pipe = diffusers_pipeline(kit, parts)
    params = GenerationParams(steps=steps, cfg_scale=7.0, width=width, height=height, seed=1, scheduler="euler_a",
                              negative_prompt=NEGATIVE, num_images=1, quality_tags=False, default_negative=False)

    said = {}  # the prompts our loop gave its encoders: diffusers gets the same

    def ours(p):
        result = generator(PROMPT, p)
        said.update(prompt=result.prompt, negative=result.negative_prompt)
        return np.asarray(result.images[0])

    def theirs(p):
        with torch.inference_mode():
            image = pipe(said["prompt"], negative_prompt=said["negative"] or None, num_inference_steps=p.steps,
                         guidance_scale=p.cfg_scale, width=p.width, height=p.height,
                         generator=torch.Generator("cpu").manual_seed(p.seed), output_type="np").images[0]
        return (image * 255).round().astype(np.uint8)

    timed = {}
    for name, paint in (("ours", ours), ("diffusers", theirs)):
        paint(replace(params, steps=2))  # warm-up: kernels chosen, memory pools filled
        _sync(device)
        began = time.perf_counter()
        timed[name] = paint(params)
        _sync(device)
        figures[f"{name}_s"] = round(time.perf_counter() - began, 3)
    figures["ours_over_diffusers"] = round(figures["ours_s"] / figures["diffusers_s"], 3)
    figures["mean_abs_diff"] = float(np.abs(timed["ours"].astype(np.float64) - timed["diffusers"]).mean())
    figures["ours_pixel_std"] = float(timed["ours"].std())  # a blank or NaN picture would show 0 here
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    k = sub.add_parser("kit", help="write the configs and tokenizers `run` needs (here, not on the GPU machine)")
    k.add_argument("dest", type=Path)
    r = sub.add_parser("run", help="measure (on the GPU machine)")
    r.add_argument("kit", type=Path, help="a kit, or any SDXL snapshot (only its configs and tokenizers are read)")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--device", default="cuda:0")
    r.add_argument("--dtype", choices=["fp16", "fp32"], default=None, help="default: fp16 on CUDA, fp32 on CPU")
    r.add_argument("--width", type=int, default=1024)
    r.add_argument("--height", type=int, default=1024)
    r.add_argument("--steps", type=int, default=30)
    r.add_argument("--unet-repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if args.command == "kit":
        print(write_kit(args.dest))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    dtype = args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")
    figures = run(args.kit, args.out, args.device, dtype, args.width, args.height, args.steps, args.unet_repeats)
    (args.out / "gpu_loop.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
