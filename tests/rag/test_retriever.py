"""The retriever on a tiny tag table: signals, reasons, counts, negation, category rules, limits."""

from __future__ import annotations

import json

import pytest

from sotai.errors import InvalidInput
from sotai.rag import CATEGORIES, SIGNALS, Candidate


def tags_of(candidates):
    return [c.tag for c in candidates]


def test_candidates_carry_tag_score_category_and_reason(tiny_retriever):
    cands = tiny_retriever.retrieve("銀髪の少女が夜の桜の下で微笑んでいる", top_k=20)
    assert cands and all(isinstance(c, Candidate) for c in cands)
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)
    for c in cands:
        d = c.to_dict()
        assert set(d) == {"tag", "score", "category", "reason"}
        assert d["category"] in CATEGORIES and d["reason"]["signal"] in SIGNALS
        assert d["reason"]["span"] in "銀髪の少女が夜の桜の下で微笑んでいる"
    json.dumps([c.to_dict() for c in cands], ensure_ascii=False)


def test_scene_yields_the_tags_a_tagger_would_pick(tiny_retriever):
    found = tags_of(tiny_retriever.retrieve("銀髪の少女が夜の桜の下で微笑んでいる", top_k=20))
    for tag in ("1girl", "solo", "grey_hair", "night", "cherry_blossoms", "smile"):
        assert tag in found, (tag, found)


def test_reason_names_the_span_and_signal(tiny_retriever):
    by_tag = {c.tag: c for c in tiny_retriever.retrieve("ロングヘアの少女", top_k=10)}
    assert by_tag["long_hair"].reason == {"span": "ロングヘア", "signal": "japanese_name"}


def test_modifier_and_noun_compose_through_glosses(tiny_retriever):
    by_tag = {c.tag: c for c in tiny_retriever.retrieve("赤いリボンと青い目", top_k=10)}
    assert by_tag["red_ribbon"].reason["span"] == "赤いリボン"
    assert "blue_eyes" in by_tag


@pytest.mark.parametrize("text, present, absent", [
    ("一人の少女", ["1girl", "solo"], ["2girls", "multiple_girls"]),
    ("二人の少女", ["2girls", "multiple_girls"], ["1girl", "solo"]),
    ("少女たちが笑っている", ["multiple_girls"], ["solo", "1girl"]),
    ("少年と少女", ["1girl", "1boy"], ["solo"]),
])
def test_counts_of_people(tiny_retriever, text, present, absent):
    found = tags_of(tiny_retriever.retrieve(text, top_k=20))
    for tag in present:
        assert tag in found, (text, tag, found)
    for tag in absent:
        assert tag not in found, (text, tag, found)


@pytest.mark.parametrize("text", ["帽子をかぶっていない少女", "少女は帽子をかぶっていない", "帽子なしの少女"])
def test_negated_things_are_not_tagged(tiny_retriever, text):
    found = tags_of(tiny_retriever.retrieve(text, top_k=20))
    assert "hat" not in found
    assert "1girl" in found  # the subject itself is not negated
    assert "no_hat" in found


def test_meta_tags_never_and_artists_only_when_named(tiny_retriever):
    found = tags_of(tiny_retriever.retrieve("桜の木の下の少女、高画質", top_k=40))
    assert "highres" not in found and "commentary_request" not in found
    assert "sakugo" not in found  # a machine name reading 桜 as an artist is not the text naming one
    assert "sakura_kyoko" not in found  # nor as a character: 桜 has a general meaning
    named = tags_of(tiny_retriever.retrieve("ウロップが描いた少女", top_k=40))
    assert "wlop" in named


def test_character_named_by_japanese_alias(tiny_retriever):
    by_tag = {c.tag: c for c in tiny_retriever.retrieve("初音ミクが歌っている", top_k=10)}
    assert by_tag["hatsune_miku"].reason == {"span": "初音ミク", "signal": "alias"}
    assert by_tag["hatsune_miku"].category == "character"


@pytest.mark.parametrize("text, top_k, field", [
    ("", 20, "text"), ("   ", 20, "text"), ("a" * 2001, 20, "text"), ("少女\x00", 20, "text"),
    ("少女", 0, "top_k"), ("少女", 201, "top_k"), ("少女", "5", "top_k"),
])
def test_bad_input_is_rejected_naming_the_field(tiny_retriever, text, top_k, field):
    with pytest.raises(InvalidInput) as err:
        tiny_retriever.retrieve(text, top_k=top_k)
    assert err.value.field == field


def test_top_k_bounds_the_list(tiny_retriever):
    assert len(tiny_retriever.retrieve("銀髪の少女が夜の桜の下で微笑んでいる", top_k=3)) == 3
