"""The independent reference: diffusers' SDXL pipeline with schedulers built as a diffusers user writes them.

Nothing here calls the project's scheduler mapping (`sotai.diffusion.schedulers.make_scheduler`): a
wrong mapping (Karras sigmas off, wrong solver) must show up as a parity failure, not be copied into
the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from sotai.params import GenerationParams

# Mean absolute difference per pixel, in 0..255 units. The correct pipeline differs from diffusers
# on the tiny weights by float rounding only: measured 7.1e-5 .. 9.9e-5 (euler_a / dpmpp_2m_karras,
# with and without a negative prompt, 512x640, 4 steps, CFG 7). The bound leaves a margin of 100x
# over that and sits 48x below the smallest deliberate deviation test_parity.py tries (crop 64:
# 0.48; guidance x0.75: 0.98; a dropped prompt token: 0.91; DPM++ 2M without Karras sigmas: 7.6).
MAX_MEAN_ABS_DIFF = 0.01


def reference_scheduler(name: str, pipe):
    """The sampler `name` as diffusers' docs swap schedulers: `from_config(pipe.scheduler.config)`."""
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    config = pipe.scheduler.config
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    if name == "dpmpp_2m_karras":
        # A1111's "DPM++ 2M Karras", per diffusers' scheduler table.
        return DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True)
    raise ValueError(f"no reference for scheduler {name!r}")


def diffusers_image(pipe, prompt: str, p: GenerationParams) -> np.ndarray:
    """-> [num_images, H, W, 3] uint8 from diffusers' own StableDiffusionXLPipeline."""
    pipe.scheduler = reference_scheduler(p.scheduler, pipe)
    images = pipe(
        prompt,
        negative_prompt=p.negative_prompt or None,
        num_inference_steps=p.steps,
        guidance_scale=p.cfg_scale,
        width=p.width,
        height=p.height,
        num_images_per_prompt=p.num_images,
        generator=torch.Generator("cpu").manual_seed(p.seed),
        output_type="np",
    ).images
    return (images * 255).round().astype(np.uint8)


def mean_abs_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).mean())
