"""Each real model's prompt conventions, as data: a newer model is a table entry, not a code change.

The conventions are the models' own cards: the quality and rating tags they were trained with and
the negative prompt they recommend. `sotai.settings.Settings.sd_model` picks the model the
`animagine` profile exports; the denoising loop reads the conventions of the model it serves
(its manifest's model name).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PromptConventions:
    repo_id: str
    quality_tags: tuple[str, ...]  # appended after the rating tags when quality_tags is on
    # sotai.limits.RATINGS -> the model's rating tags
    rating_tags: dict[str, tuple[str, ...]]
    default_negative: str
    # What else the model was trained to read, for users and UIs to offer (never added silently).
    quality_by_percentile: tuple[tuple[str, str], ...] = ()
    aesthetic_tags: tuple[str, ...] = ()
    year_tags: tuple[tuple[str, str], ...] = ()
    recommended: dict = field(default_factory=dict)  # settings from the model card

    @property
    def name(self) -> str:
        return self.repo_id.rpartition("/")[2]


ANIMAGINE_XL_30 = PromptConventions(
    repo_id="cagliostrolab/animagine-xl-3.0",
    quality_tags=("masterpiece", "best quality"),
    rating_tags={
        "sfw": ("rating: general",), "general": ("rating: general",), "sensitive": ("rating: sensitive",),
        "questionable": ("rating: questionable", "nsfw"), "nsfw": ("rating: questionable", "nsfw"),
        "explicit": ("rating: explicit", "nsfw"),
    },
    default_negative=(
        "nsfw, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
        "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry, "
        "artist name"
    ),
    recommended={"width": 832, "height": 1216, "steps": 28, "cfg_scale": (5.0, 7.0), "sampler": "euler_a"},
)

ANIMAGINE_XL_31 = PromptConventions(
    repo_id="cagliostrolab/animagine-xl-3.1",
    quality_tags=("masterpiece", "best quality", "very aesthetic", "absurdres"),
    rating_tags={
        "sfw": ("safe",), "general": ("safe",), "sensitive": ("sensitive",),
        "questionable": ("nsfw",), "nsfw": ("nsfw",), "explicit": ("explicit", "nsfw"),
    },
    default_negative=(
        "nsfw, lowres, (bad), text, error, fewer, extra, missing, worst quality, jpeg artifacts, low quality, "
        "watermark, unfinished, displeasing, oldest, early, chromatic aberration, signature, extra digits, "
        "artistic error, username, scan, [abstract]"
    ),
    quality_by_percentile=(("masterpiece", "> 95%"), ("best quality", "> 85%"), ("great quality", "> 75%"),
                           ("good quality", "> 50%"), ("normal quality", "> 25%"), ("low quality", "> 10%"),
                           ("worst quality", "<= 10%")),
    aesthetic_tags=("very aesthetic", "aesthetic", "displeasing", "very displeasing"),
    year_tags=(("newest", "2021-2024"), ("recent", "2018-2020"), ("mid", "2015-2017"), ("early", "2011-2014"),
               ("oldest", "2005-2010")),
    recommended={"width": 832, "height": 1216, "steps": 28, "cfg_scale": (5.0, 7.0), "sampler": "euler_a"},
)

CONVENTIONS = {c.repo_id: c for c in (ANIMAGINE_XL_30, ANIMAGINE_XL_31)}
DEFAULT_MODEL = ANIMAGINE_XL_30.repo_id


def conventions_for(model_name: str) -> PromptConventions:
    """The conventions of a served model by its name ("animagine-xl-3.1") or repo id; others (the tiny
    stand-in, a custom fine-tune) follow Animagine XL 3.0, the default."""
    for c in CONVENTIONS.values():
        if model_name in (c.repo_id, c.name):
            return c
    return CONVENTIONS[DEFAULT_MODEL]
