"""The dart-v2 input prompt and the Animagine-ordered output prompt."""

import pytest

from sotai.dart.prompt import DartInput, animagine_order, aspect_ratio_name, compose_prompt, prompt_tokens
from sotai.dart.vocab import normalize_tag

from .conftest import candidate


def test_prompt_is_exactly_dart_v2s_format():
    d = DartInput(
        copyright=("vocaloid",), character=("hatsune miku",), general=("1girl", "long hair"),
        rating="general", aspect_ratio="tall", length="long", identity="none",
    )
    assert compose_prompt(d) == (
        "<|bos|><copyright>vocaloid</copyright><character>hatsune miku</character>"
        "<|rating:general|><|aspect_ratio:tall|><|length:long|>"
        "<general>1girl, long hair<|identity:none|><|input_end|>"
    )


def test_empty_sections_stay_in_place():
    d = DartInput((), (), (), "sfw", "square", "very_short", "strict")
    assert compose_prompt(d) == (
        "<|bos|><copyright></copyright><character></character><|rating:sfw|><|aspect_ratio:square|>"
        "<|length:very_short|><general><|identity:strict|><|input_end|>"
    )


def test_the_tokenizer_reads_the_prompt_as_the_token_list(tiny_snapshot):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_snapshot)
    d = DartInput(("touhou",), ("hakurei reimu",), ("1girl", "red eyes", "^_^"), "sensitive", "wide", "medium", "lax")
    ids = tok(compose_prompt(d), add_special_tokens=False).input_ids
    assert ids == tok.convert_tokens_to_ids(prompt_tokens(d))
    assert tok.unk_token_id not in ids


@pytest.mark.parametrize(
    ("width", "height", "name"),
    [
        (1024, 1024, "square"), (1152, 896, "wide"), (896, 1152, "tall"), (1216, 832, "wide"), (832, 1216, "tall"),
        (1344, 768, "wide"), (768, 1344, "tall"), (1536, 640, "ultra_wide"), (640, 1536, "ultra_tall"),
        (1024, 512, "ultra_wide"), (512, 1024, "ultra_tall"), (1080, 1024, "square"),
    ],
)
def test_aspect_ratio_follows_the_requested_size(width, height, name):
    assert aspect_ratio_name(width, height) == name


@pytest.mark.parametrize(
    ("danbooru", "written"),
    [("long_hair", "long hair"), ("hatsune_miku", "hatsune miku"), ("^_^", "^_^"), ("o_o", "o_o"),
     ("  black_hair ", "black hair"), ("1girl", "1girl"), ("star_(symbol)", "star (symbol)")],
)
def test_underscores_become_spaces_except_in_emoticons(danbooru, written):
    assert normalize_tag(danbooru) == written


def tag(name, category="general"):
    return {**candidate(name, category=category), "tag": name}


def test_animagine_order_people_character_copyright_then_general():
    tags = [tag("smile"), tag("vocaloid", "copyright"), tag("1girl"), tag("hatsune miku", "character"),
            tag("night"), tag("1boy"), tag("wlop", "artist"), tag("highres", "meta")]
    assert [t["tag"] for t in animagine_order(tags)] == [
        "1girl", "1boy", "hatsune miku", "vocaloid", "wlop", "smile", "night", "highres"]


def test_animagine_order_drops_repeats_keeping_the_first():
    tags = [tag("smile"), {**tag("smile"), "score": 0.1}, tag("1girl")]
    ordered = animagine_order(tags)
    assert [t["tag"] for t in ordered] == ["1girl", "smile"]
    assert ordered[1]["score"] == 0.5
