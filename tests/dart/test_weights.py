"""A user's A1111 weights go around Dart: Dart reads plain tags, the final prompt keeps the weights."""

from sotai.dart import DartSampling
from sotai.dart.prompt import join_prompt
from sotai.diffusion.emphasis import parse_attention

from .conftest import candidate


def user(tag: str) -> dict:
    return {"tag": tag, "score": 1.0, "category": "general", "reason": {"span": tag, "signal": "user"}}


def complete(completer, cands):
    return completer.complete(cands, width=832, height=1216, rating="general",
                              sampling=DartSampling(seed=7, min_new_tokens=2, max_new_tokens=4))


def test_dart_reads_plain_tags_and_the_prompt_keeps_the_users_weighted_groups(completer):
    result = complete(completer, [user("1girl"), user("(silver_hair, red_eyes:1.2)"), user("[night]")])
    assert "silver hair, red eyes" in result.dart_input and "night" in result.dart_input
    assert not any(c in result.dart_input for c in "()[]") and "1.2" not in result.dart_input
    assert "(silver hair, red eyes:1.2)" in result.prompt and "[night]" in result.prompt
    assert result.prompt.count("silver hair") == 1  # the group is written once, not per tag
    by_tag = {t["tag"]: t for t in result.tags}
    assert by_tag["silver hair"]["weight"] == by_tag["red eyes"]["weight"] == 1.2
    assert by_tag["night"]["weight"] == 1 / 1.1
    assert "weight" not in by_tag["1girl"]
    # Dart's own additions follow, plain; the prompt still parses to the user's weights.
    assert len(result.tags) > 4
    weights = dict((t.strip(", "), w) for t, w in parse_attention(result.prompt) if t.strip(", "))
    assert weights["silver hair, red eyes"] == 1.2


def test_tag_names_with_brackets_stay_tags_and_are_escaped_in_the_prompt(completer):
    # RAG's candidates are Danbooru names: their brackets are part of the name, never a weight.
    result = complete(completer, [candidate("1girl"), candidate("yuuki_(sao)", category="character"),
                                  user("asuna \\(sao\\)")])
    names = [t["tag"] for t in result.tags]
    assert "yuuki (sao)" in names and "asuna (sao)" in names
    assert "yuuki \\(sao\\)" in result.prompt and "asuna \\(sao\\)" in result.prompt
    assert all(w == 1.0 for _, w in parse_attention(result.prompt))


def test_join_prompt_writes_a_group_once_where_its_first_tag_lands():
    group = "(a, b:1.2)"
    tags = [{"tag": "b", "group": group}, {"tag": "x"}, {"tag": "a", "group": group}, {"tag": "c (d)"}]
    assert join_prompt(tags) == "(a, b:1.2), x, c \\(d\\)"
