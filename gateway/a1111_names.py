"""A1111's sampler and schedule-type names, and how they map onto the schedulers this server paints with.

Sans-I/O. Mirrors how A1111 1.9+ resolves `sampler_name` + `scheduler` (modules/sd_samplers.py
get_sampler_and_scheduler, modules/sd_schedulers.py schedulers_map), with one difference: where
A1111 silently falls back to its default (an unknown name), this server answers 422 naming the field.

- A schedule type is named by its `name` or its `label`, exactly (`karras`, `Karras`).
- A sampler name may end in " <schedule label|name|alias>" (`DPM++ 2M Karras`, the pre-1.9 names):
  the suffix picks the schedule type and is removed.
- A sampler is named by its name or an alias, in any case (A1111's samplers_map keys are lower-cased).
- The schedule type a sampler uses by default (its `options["scheduler"]`) is the same as Automatic.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotai.errors import InvalidInput


@dataclass(frozen=True)
class ScheduleType:
    name: str
    label: str
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sampler:
    name: str
    aliases: tuple[str, ...]
    options: dict


# All of A1111's schedule types (so their names are recognised, and refused when we lack them).
SCHEDULE_TYPES = (
    ScheduleType("automatic", "Automatic"),
    ScheduleType("uniform", "Uniform", need_inner_model=True),
    ScheduleType("karras", "Karras", default_rho=7.0),
    ScheduleType("exponential", "Exponential"),
    ScheduleType("polyexponential", "Polyexponential", default_rho=1.0),
    ScheduleType("sgm_uniform", "SGM Uniform", need_inner_model=True, aliases=("SGMUniform",)),
    ScheduleType("kl_optimal", "KL Optimal"),
    ScheduleType("align_your_steps", "Align Your Steps"),
    ScheduleType("simple", "Simple", need_inner_model=True),
    ScheduleType("normal", "Normal", need_inner_model=True),
    ScheduleType("ddim", "DDIM", need_inner_model=True),
    ScheduleType("beta", "Beta", need_inner_model=True),
)
SCHEDULE_TYPES_MAP = {**{s.name: s for s in SCHEDULE_TYPES}, **{s.label: s for s in SCHEDULE_TYPES}}

# The samplers this server has, as A1111 1.9+ lists them (name, aliases, options).
SAMPLERS = (
    Sampler("DPM++ 2M", ("k_dpmpp_2m", "k_dpmpp_2m_ka"), {"scheduler": "karras"}),
    Sampler("Euler a", ("k_euler_a", "k_euler_ancestral"), {"uses_ensd": True}),
    Sampler("Euler", ("k_euler",), {}),
)
# Other A1111 samplers: recognised, so the error says "not available here" rather than "unknown".
OTHER_A1111_SAMPLERS = ("DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "LMS",
                        "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++",
                        "PLMS", "UniPC", "LCM")
_SAMPLERS_BY_KEY = {k.lower(): s for s in SAMPLERS for k in (s.name, *s.aliases)}

# (A1111 sampler, schedule type it runs with) -> our scheduler (sotai.limits.SCHEDULERS)
PAINTS_WITH = {("Euler a", "automatic"): "euler_a", ("Euler", "automatic"): "euler",
               ("DPM++ 2M", "karras"): "dpmpp_2m_karras"}
A1111_OF = {ours: pair for pair, ours in PAINTS_WITH.items()}
DEFAULT_SAMPLER = "Euler a"  # this server's default, not A1111's (DPM++ 2M)


@dataclass(frozen=True)
class Resolved:
    scheduler: str  # ours
    sampler_name: str  # A1111's name
    schedule_type: str  # A1111's label of the schedule painted with (Karras for DPM++ 2M's Automatic)


def _offer() -> str:
    return "; ".join(f"{s} with scheduler {'Automatic' if t == 'automatic' else SCHEDULE_TYPES_MAP[t].label}"
                     for s, t in PAINTS_WITH)


def resolve(sampler_name: str | None, scheduler: str | None, *, sampler_field: str = "sampler_name") -> Resolved:
    """A1111's (sampler_name, scheduler) -> ours, or InvalidInput naming the field at fault."""
    schedule, schedule_field = SCHEDULE_TYPES_MAP["automatic"], "scheduler"
    if scheduler not in (None, ""):
        if scheduler not in SCHEDULE_TYPES_MAP:
            labels = ", ".join(s.label for s in SCHEDULE_TYPES)
            raise InvalidInput("scheduler", scheduler, f"is not an A1111 schedule type (name or label: {labels})")
        schedule = SCHEDULE_TYPES_MAP[scheduler]
    name = sampler_name or DEFAULT_SAMPLER
    for candidate in SCHEDULE_TYPES:  # "DPM++ 2M Karras": the suffix names the schedule type
        suffix = next((o for o in (candidate.label, candidate.name, *candidate.aliases) if name.endswith(" " + o)), None)
        if suffix is not None:
            schedule, schedule_field, name = candidate, sampler_field, name[: -(len(suffix) + 1)]
            break
    sampler = _SAMPLERS_BY_KEY.get(name.lower())
    if sampler is None:
        known = name in OTHER_A1111_SAMPLERS
        raise InvalidInput(sampler_field, sampler_name, ("is an A1111 sampler this server does not have" if known
                           else "is not a sampler name or alias") + f": use one of {_offer()} (see /sdapi/v1/samplers)")
    runs = sampler.options.get("scheduler", "automatic") if schedule.name == "automatic" else schedule.name
    ours = PAINTS_WITH.get((sampler.name, runs))
    if ours is None:
        raise InvalidInput(schedule_field, scheduler if schedule_field == "scheduler" else sampler_name,
                           f"sampler {sampler.name} with schedule type {schedule.label} is not available here: "
                           f"use one of {_offer()}")
    return Resolved(ours, sampler.name, SCHEDULE_TYPES_MAP[runs].label)
