"""The page's tag editor as plain functions: remove, reorder, add, suggestions, reasons."""

from __future__ import annotations

import pytest

from sotai.errors import InvalidInput
from sotai.gateway.ui import (
    add_tag, keep_checked, move_tag, selected_from, suggestions_from, tag_label,
)


def t(tag, signal="gloss", span="夜", **reason):
    return {"tag": tag, "score": 0.9, "category": "general", "reason": {"span": span, "signal": signal, **reason}}


DART_OUT = [t("1girl", "japanese_name", "少女"), t("night"), t("long hair", "dart", ""), t("smile", span="微笑ん")]
RANKED = [t("1girl"), t("night"), t("evil_smile", span="微笑ん", not_selected="same concept as smile"), t("smile"),
          t("night_sky")]


def test_the_selection_is_the_dart_result_without_dart_s_additions():
    current = selected_from(DART_OUT)
    assert [x["tag"] for x in current] == ["1girl", "night", "smile"]
    assert [s["tag"] for s in suggestions_from(RANKED, current)] == ["evil_smile", "night_sky"]


def test_labels_show_the_reason_and_why_a_suggestion_was_left_out():
    assert tag_label(t("night")) == "night — 「夜」→ 辞書の訳語"
    assert "same concept as smile" in tag_label(RANKED[2])


def test_remove_reorder_add():
    current = selected_from(DART_OUT)
    current = keep_checked(current, ["1girl", "smile"])
    assert [x["tag"] for x in current] == ["1girl", "smile"]
    current = move_tag(current, "smile", -1)
    assert [x["tag"] for x in current] == ["smile", "1girl"]
    assert [x["tag"] for x in move_tag(current, "smile", -1)] == ["smile", "1girl"]  # stays in bounds
    sugg = suggestions_from(RANKED, current)
    current, sugg = add_tag(current, sugg, "evil_smile")
    assert current[-1]["reason"] == {"span": "微笑ん", "signal": "gloss"}  # its own reason, not why it was left out
    assert "evil_smile" not in [s["tag"] for s in sugg]
    current, sugg = add_tag(current, sugg, "holding umbrella")  # typed, Dart's spelling
    assert current[-1]["tag"] == "holding_umbrella" and current[-1]["reason"]["signal"] == "user"
    assert add_tag(current, sugg, "smile")[0] == current  # no duplicate


def test_a_bad_typed_tag_names_the_field():
    with pytest.raises(InvalidInput) as err:
        add_tag([], [], "x" * 200)
    assert err.value.field == "tag"


def test_a_dropped_picture_becomes_the_init_image_of_img2img():
    import io

    from PIL import Image

    from sotai.diffusion.png import decode_png
    from sotai.gateway.ui import ui_params

    picture = Image.new("RGBA", (300, 200), (10, 200, 30, 255))
    params = ui_params(7.0, 4, "512x768", 1, "", 3, "general", "euler_a", picture, 0.4)
    assert params.denoising_strength == 0.4 and (params.width, params.height) == (512, 768)
    pixels = decode_png(params.init_image)
    assert pixels.shape == (200, 300, 3) and tuple(pixels[0, 0]) == (10, 200, 30)
    assert params.checked().init_image == params.init_image
    assert ui_params(7.0, 4, "512x768", 1, "", 3, "general", "euler_a", None, 0.75).init_image == b""
    with pytest.raises(InvalidInput) as caught:
        ui_params(7.0, 4, "512x768", 1, "", 3, "general", "euler_a", picture, 1.5).checked()
    assert caught.value.field == "denoising_strength"


def test_the_page_s_hires_fix_settings_reach_the_parameters():
    from sotai.gateway.ui import ui_params

    params = ui_params(7.0, 4, "512x768", 1, "", 3, "general", "euler_a", None, 0.6, True, 1.5, "Latent (nearest)", 3)
    assert (params.enable_hr, params.hr_scale, params.hr_upscaler, params.hr_second_pass_steps) == \
        (True, 1.5, "Latent (nearest)", 3)
    assert params.checked().denoising_strength == 0.6
