"""Each model's prompt conventions (a table entry), and each profile's generation defaults."""

from __future__ import annotations

import pytest

from sotai.diffusion.conventions import ANIMAGINE_XL_30, ANIMAGINE_XL_31, CONVENTIONS, conventions_for
from sotai.diffusion.prompting import animagine_prompts
from sotai.limits import RATINGS
from sotai.settings import Settings


@pytest.mark.parametrize("rating, tags", [("general", "rating: general"), ("sensitive", "rating: sensitive"),
                                          ("questionable", "rating: questionable, nsfw"),
                                          ("explicit", "rating: explicit, nsfw")])
def test_animagine_30_rating_tags(rating, tags):
    prompt, negative = animagine_prompts("1girl", "", rating=rating, quality_tags=True, default_negative=True,
                                         conventions=ANIMAGINE_XL_30)
    assert prompt == f"1girl, {tags}, masterpiece, best quality"
    assert ("nsfw" in negative.split(", ")) == ("nsfw" not in tags), "a rating that asks for nsfw lifts it"


def test_animagine_31_has_its_own_tags_and_negative():
    prompt, negative = animagine_prompts("1girl", "", rating="general", quality_tags=True, default_negative=True,
                                         conventions=ANIMAGINE_XL_31)
    assert prompt == "1girl, safe, masterpiece, best quality, very aesthetic, absurdres"
    assert negative.startswith("nsfw, lowres, (bad), text, error") and "displeasing" in negative
    assert dict(ANIMAGINE_XL_31.year_tags)["newest"] == "2021-2024"
    assert dict(ANIMAGINE_XL_31.quality_by_percentile)["masterpiece"] == "> 95%"


def test_every_model_names_every_rating():
    for c in CONVENTIONS.values():
        assert set(c.rating_tags) == set(RATINGS), c.repo_id


def test_served_model_name_picks_its_conventions():
    assert conventions_for("animagine-xl-3.1") is ANIMAGINE_XL_31
    assert conventions_for("cagliostrolab/animagine-xl-3.0") is ANIMAGINE_XL_30
    assert conventions_for("sotai-tiny-sdxl (random weights)") is ANIMAGINE_XL_30


def test_profile_defaults():
    real = Settings(SOTAI_PROFILE="animagine")
    assert (real.default_width, real.default_height, real.default_steps) == (832, 1216, 28)
    assert 5.0 <= real.default_cfg_scale <= 7.0
    tiny = Settings(SOTAI_PROFILE="tiny")
    assert (tiny.default_width, tiny.default_height, tiny.default_steps) == (512, 768, 20)
    assert Settings(SOTAI_PROFILE="animagine", DEFAULT_STEPS=12).default_steps == 12  # the environment wins


def test_sd_model_setting_selects_a_table_entry():
    from sotai.export.build import ExportPlan

    plan = ExportPlan.from_settings(Settings(SOTAI_SD_MODEL="cagliostrolab/animagine-xl-3.1"), "animagine")
    assert plan.model_name == "animagine-xl-3.1" and plan.sd_model == "cagliostrolab/animagine-xl-3.1"
    with pytest.raises(ValueError, match="SOTAI_SD_MODEL.*animagine-xl-3.0"):
        Settings(SOTAI_SD_MODEL="someone/sdxl-finetune")
