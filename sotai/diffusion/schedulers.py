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


def scheduled_tail(name: str, config: dict, schedule: int, run: int, device):
    """A fresh scheduler set to a `schedule`-step run of which only the last `run` steps are taken
    (img2img and the hires pass; diffusers' img2img get_timesteps) -> (scheduler, those timesteps)."""
    scheduler = make_scheduler(name, config)
    scheduler.set_timesteps(max(schedule, 1), device=device)
    if run <= 0:
        return scheduler, scheduler.timesteps[:0]
    start = (schedule - run) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler, scheduler.timesteps[start:]


def noised_to_first(scheduler, latents, noise, timesteps):
    """Clean latents noised to the first timestep that runs (unchanged when none runs)."""
    return scheduler.add_noise(latents, noise, timesteps[:1]) if len(timesteps) else latents
