"""The selection step (sotai.rag.select) and its contradiction rules (sotai.rag.conflicts)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sotai.rag import conflicts
from sotai.rag.candidate import Candidate
from sotai.rag.select import FEATURES, Calibration, default_calibration, fit_logistic, implies, select, select_text

# Confidence = sigmoid(2 * (retrieval score - 0.5)): the rules are tested apart from the fitted weights.
PLAIN = Calibration(tuple(-1.0 if f == "bias" else 2.0 if f == "score" else 0.0 for f in FEATURES), 0.5)


def cand(tag, score, span, signal="gloss", category="general"):
    return Candidate(tag, score, category, {"span": span, "signal": signal}, evidence={signal: score})


def tags(selection):
    return [t["tag"] for t in selection.tags]


# -- conflicts -------------------------------------------------------------------

@pytest.mark.parametrize("given, ok", [
    (["1girl", "solo"], True), (["1girl", "1boy"], True), (["2girls", "multiple_girls"], True),
    (["1girl", "5girls"], False), (["1girl", "1boy", "solo"], False), (["multiple_girls", "1girl"], False),
    (["no_humans", "1girl"], False), (["2girls", "solo"], False), (["6+girls", "multiple_girls"], True),
])
def test_people_counts_agree_or_not(given, ok):
    assert conflicts.counts_agree(given) is ok


def test_one_hair_and_eye_colour_unless_the_text_says_two():
    assert conflicts.conflict("white_hair", ["1girl", "grey_hair"]) == "a second hair colour: grey_hair"
    assert conflicts.conflict("white hair", ["grey hair"]) is not None  # Dart's spelling too
    assert conflicts.conflict("white_hair", ["grey_hair"], capacity=2) is None  # two people
    assert conflicts.conflict("red_eyes", ["blue_eyes"]) is not None
    assert conflicts.conflict("red_eyes", ["blue_eyes", "heterochromia"]) is None
    assert conflicts.conflict("long_hair", ["grey_hair"]) is None  # length is another family


def test_negated_tags_and_their_no_forms_contradict():
    assert conflicts.conflict("hat", [], negated=["hat"]) == "the text negates it"
    assert conflicts.conflict("hat", ["no_hat"]) and conflicts.conflict("no_hat", ["hat"])
    assert conflicts.conflict("5girls", ["1girl", "solo"]).startswith("people count")


# -- the rules of select() ------------------------------------------------------------

def test_one_tag_per_concept_from_one_span():
    found = select([cand("smile", 1.0, "微笑ん"), cand("evil_smile", 0.9, "微笑ん"), cand("crazy_smile", 0.85, "微笑ん"),
                    cand("1girl", 1.1, "少女", "japanese_name")], calibration=PLAIN)
    assert tags(found) == ["1girl", "smile"]
    why = {s["tag"]: s["reason"]["not_selected"] for s in found.suggestions}
    assert why["evil_smile"] == "same concept as smile (from 「微笑ん」)"


def test_the_specific_tag_carries_the_general_one():
    found = select([cand("umbrella", 1.0, "傘"), cand("holding_umbrella", 0.9, "傘を持っ"), cand("holding", 0.8, "持っ")],
                   calibration=PLAIN)
    assert tags(found) == ["holding_umbrella"]
    assert {s["tag"]: s["reason"]["not_selected"] for s in found.suggestions}["umbrella"] == "implied by holding_umbrella"
    assert implies("red_umbrella", "umbrella") and implies("sitting_on_bench", "sitting")
    assert not implies("cat_ears", "cat") and not implies("no_shoes", "shoes")


def test_hair_colours_one_per_person():
    one = [cand("grey_hair", 1.0, "銀髪"), cand("white_hair", 0.95, "銀髪"), cand("blonde_hair", 0.9, "金髪")]
    assert tags(select(one, people=1, calibration=PLAIN)) == ["grey_hair"]
    # 銀髪の少年と金髪の少女: two people, two spans -> two colours, still one per span
    assert sorted(tags(select(one, people=2, calibration=PLAIN))) == ["blonde_hair", "grey_hair"]


def test_negated_and_unsupported_tags_stay_out_but_remain_suggestions():
    found = select([cand("hat", 1.0, "帽子"), cand("rain", 0.9, "雨"), cand("howling", 0.4, "泣い", "embedding")],
                   negated=("hat",), calibration=PLAIN)
    assert tags(found) == ["rain"]
    assert [s["tag"] for s in found.suggestions] == ["hat", "howling"]
    assert found.suggestions[1]["reason"]["not_selected"].startswith("confidence")
    assert found.negated == ["hat"]


def test_every_selected_tag_has_a_reason_and_a_confidence():
    found = select([cand("1girl", 1.1, "少女", "japanese_name"), cand("night", 1.0, "夜")], calibration=PLAIN)
    for t in found.tags:
        assert set(t) == {"tag", "score", "category", "reason"}
        assert t["reason"]["span"] and t["reason"]["signal"] and 0.5 <= t["score"] <= 1.0


def test_logistic_fit_separates_what_it_can():
    rng = np.random.default_rng(0)
    x = np.c_[np.ones(400), rng.normal(size=400)]
    y = (x[:, 1] > 0.3).astype(float)
    w = fit_logistic(x, y, l2=1e-4)
    assert w[1] > 3 and abs(-w[0] / w[1] - 0.3) < 0.1


def test_calibration_file_has_both_profiles():
    for profile in ("with_names", "glosses_only"):
        cal = default_calibration(profile)
        assert len(cal.weights) == len(FEATURES) and 0.2 <= cal.threshold <= 0.85


# -- with a real retriever ---------------------------------------------------------------

def test_selection_of_a_real_query_is_a_subset_in_prompt_order(tiny_retriever):
    text = "銀髪の少女が夜の桜の下で微笑んでいる"
    ranked = {c.tag for c in tiny_retriever.retrieve(text, 20)}
    chosen = select_text(tiny_retriever, text)
    names = tags(chosen)
    assert names[:2] == ["1girl", "solo"] and {"night", "cherry_blossoms"} <= set(names)
    assert set(names) <= ranked and len(names) < len(ranked)
    assert {s["tag"] for s in chosen.suggestions} == ranked - set(names)


def test_cli_stage_select_prints_the_fixed_interface(tiny_data, tmp_path, monkeypatch, capsys):
    from sotai import cli
    from sotai.settings import get_settings

    monkeypatch.setenv("SOTAI_TAG_DATA", str(tiny_data))
    monkeypatch.setenv("SOTAI_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("VECTOR_DB_PATH", raising=False)
    get_settings.cache_clear()
    texts = tmp_path / "in.jsonl"
    texts.write_text('{"text": "一人の少女"}\n{"text": "帽子をかぶっていない少女が雨の中にいる"}\n', encoding="utf-8")
    try:
        assert cli.main(["tags", "銀髪の少女が夜の桜の下で微笑んでいる", "--stage", "select", "--json", "--local"]) == 0
        single = json.loads(capsys.readouterr().out)
        assert cli.main(["tags", "--input", str(texts), "--stage", "select", "--json", "--local"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
        texts.write_text('{"txt": "少女"}\n', encoding="utf-8")
        assert cli.main(["tags", "--input", str(texts), "--stage", "select", "--local"]) != 0
        err = capsys.readouterr().err
    finally:
        get_settings.cache_clear()
    assert set(single) == {"tags"} and single["tags"][0]["tag"] == "1girl"
    assert all(set(t) == {"tag", "score", "category", "reason"} for t in single["tags"])
    assert len(lines) == 2 and [t["tag"] for t in lines[0]["tags"]] == ["1girl", "solo"]
    assert "hat" not in [t["tag"] for t in lines[1]["tags"]] and "rain" in [t["tag"] for t in lines[1]["tags"]]
    assert "in.jsonl:1.text" in err and "must be a string" in err
