"""The samplers users pick by name (sotai.limits.SCHEDULERS), as diffusers schedulers.

The model's own scheduler config (betas, timestep spacing, prediction type) is kept; only the
algorithm changes, the way diffusers' docs swap schedulers with `from_config`.
"""

from __future__ import annotations

from sotai.limits import SCHEDULERS, check_choice

# Names A1111 and other tools write in a PNG's `parameters` chunk for the same samplers.
A1111_NAMES = {"euler_a": "Euler a", "euler": "Euler", "dpmpp_2m_karras": "DPM++ 2M Karras"}
assert set(A1111_NAMES) == set(SCHEDULERS)


def make_scheduler(name: str, config: dict):
    """A fresh scheduler (they hold per-run state) for `name` over the model's scheduler config."""
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    name = check_choice("scheduler", name, SCHEDULERS)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    # DPM++ 2M Karras = the multistep DPM-Solver++ of order 2 on Karras et al.'s sigma schedule.
    return DPMSolverMultistepScheduler.from_config(
        config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    )
