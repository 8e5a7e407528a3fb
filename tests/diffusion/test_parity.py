"""Parity: on the same tiny weights and seed, SdxlGenerator (ONNX) paints what diffusers paints.

The reference (tests/diffusion/reference.py) is diffusers' own pipeline with schedulers built as a
diffusers user would build them. The bound is set from what the correct code achieves; each
deliberate deviation below (guidance, size/crop conditioning, a dropped prompt token, the wrong
scheduler variant) must land far outside it, so the bound is shown to catch such bugs.
"""

from __future__ import annotations

import numpy as np
import pytest

import sotai.diffusion.pipeline as pipeline
from sotai.params import GenerationParams

from .reference import MAX_MEAN_ABS_DIFF, diffusers_image, mean_abs_diff

PROMPT = "1girl, silver hair, cherry blossoms, night"


def _params(**overrides) -> GenerationParams:
    base = dict(steps=4, cfg_scale=7.0, width=512, height=640, seed=1234, scheduler="euler_a",
                negative_prompt="", num_images=1, quality_tags=False, default_negative=False)
    return GenerationParams(**{**base, **overrides})


@pytest.mark.parametrize("scheduler", ["euler_a", "dpmpp_2m_karras"])
@pytest.mark.parametrize("negative", ["", "lowres, bad hands"])
def test_onnx_generator_matches_diffusers(generator, diffusers_pipeline, scheduler, negative):
    p = _params(scheduler=scheduler, negative_prompt=negative, num_images=2)
    ours = np.stack(generator(PROMPT, p).images)
    theirs = diffusers_image(diffusers_pipeline, PROMPT, p)
    assert mean_abs_diff(ours, theirs) <= MAX_MEAN_ABS_DIFF


# -- deliberate deviations: each is a bug the parity bound must catch ----------------------------


def _wrong_guidance(monkeypatch, generator, p):
    return p.__class__(**{**p.__dict__, "cfg_scale": p.cfg_scale * 0.75}), p


def _wrong_crop(monkeypatch, generator, p):
    original = generator.add_time_ids

    def crop_64(height, width):
        ids = original(height, width).clone()
        ids[:, 2:4] = 64  # crop top-left (64, 64) instead of (0, 0)
        return ids

    monkeypatch.setattr(generator, "add_time_ids", crop_64)
    return p, p


def _dropped_token(monkeypatch, generator, p):
    original = pipeline.token_chunks

    def drop_first_prompt_token(tokenizer, text, field="prompt"):
        rows = original(tokenizer, text, field)
        if field != "prompt":
            return rows
        row = rows[0]
        return np.concatenate([[np.concatenate([row[:1], row[2:], row[-1:]])], rows[1:]]).astype(rows.dtype)

    monkeypatch.setattr(pipeline, "token_chunks", drop_first_prompt_token)
    return p, p


def _dpmpp_without_karras(monkeypatch, generator, p):
    from diffusers import DPMSolverMultistepScheduler

    import sotai.diffusion.schedulers as schedulers

    monkeypatch.setattr(schedulers, "make_scheduler",
                        lambda name, config: DPMSolverMultistepScheduler.from_config(config))
    p = p.__class__(**{**p.__dict__, "scheduler": "dpmpp_2m_karras"})
    return p, p


DEVIATIONS = {
    "guidance x0.75": _wrong_guidance,
    "crop 64": _wrong_crop,
    "dropped prompt token": _dropped_token,
    "DPM++ 2M without Karras sigmas": _dpmpp_without_karras,
}


@pytest.mark.parametrize("deviation", list(DEVIATIONS))
def test_a_deliberate_deviation_fails_the_bound(generator, diffusers_pipeline, monkeypatch, deviation):
    ours_params, reference_params = DEVIATIONS[deviation](monkeypatch, generator, _params())
    ours = generator(PROMPT, ours_params).images[0]
    theirs = diffusers_image(diffusers_pipeline, PROMPT, reference_params)[0]
    diff = mean_abs_diff(ours, theirs)
    # Well outside the bound, not just over it (measured 0.48 for crop 64 .. 7.6 for the scheduler).
    assert diff > 10 * MAX_MEAN_ABS_DIFF, f"{deviation}: {diff:.5f}"
