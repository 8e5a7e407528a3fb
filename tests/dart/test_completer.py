"""TagCompleter: RAG candidates in, the final ordered tags and prompt out."""

import pytest

from sotai.dart import DartSampling
from sotai.dart.completer import DART_REASON, NOT_IN_VOCAB
from sotai.errors import InvalidInput

from .conftest import candidate

CANDIDATES = [
    candidate("silver_hair", span="銀髪", score=0.9),
    candidate("cherry_blossoms", span="桜", score=0.8),
    candidate("1girl", span="少女", score=0.7),
    candidate("hatsune_miku", category="character", span="ミク", score=0.6),
    candidate("vocaloid", category=3, span="ボカロ", score=0.5),
]


def complete(completer, cands=CANDIDATES, **sampling):
    return completer.complete(cands, width=832, height=1216, rating="general", sampling=DartSampling(**{"seed": 7, **sampling}))


def test_every_candidate_is_kept_with_its_reason(completer):
    result = complete(completer)
    by_tag = {t["tag"]: t for t in result.tags}
    for c in CANDIDATES:
        kept = by_tag[c["tag"].replace("_", " ")]
        assert kept["reason"] == c["reason"]
        assert kept["score"] == c["score"]


def test_tags_dart_added_say_so(completer):
    result = complete(completer, min_new_tokens=3, max_new_tokens=5)
    added = [t for t in result.tags if t["reason"] == DART_REASON]
    assert 3 <= len(added) <= 5
    assert all(t["category"] == "general" for t in added)


def test_unknown_tags_are_kept_and_marked(completer):
    result = complete(completer, [*CANDIDATES, candidate("not_a_tag_in_the_vocabulary", span="謎")])
    kept = next(t for t in result.tags if t["tag"] == "not a tag in the vocabulary")
    assert kept["reason"]["dart"] == NOT_IN_VOCAB
    assert kept["reason"]["span"] == "謎"
    assert "not a tag in the vocabulary" in result.prompt
    assert "not a tag" not in result.dart_input


def test_same_seed_same_tags_other_seed_other_tags(completer):
    a = complete(completer, seed=11, min_new_tokens=6)
    b = complete(completer, seed=11, min_new_tokens=6)
    c = complete(completer, seed=12, min_new_tokens=6)
    assert a.tags == b.tags and a.prompt == b.prompt
    assert a.prompt != c.prompt


def test_no_seed_draws_one_and_reports_it(completer):
    result = complete(completer, seed=None, min_new_tokens=4)
    again = complete(completer, seed=result.seed, min_new_tokens=4)
    assert again.prompt == result.prompt


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 500}, "width"),
        ({"height": 4096}, "height"),
        ({"rating": "safe"}, "rating"),
    ],
)
def test_bad_request_names_the_field(completer, kwargs, field):
    args = {"width": 832, "height": 1216, "rating": "general", **kwargs}
    with pytest.raises(InvalidInput) as err:
        completer.complete(CANDIDATES, **args)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("cands", "field"),
    [
        ("1girl", "candidates"),
        ([{"score": 1}], "candidates[0]"),
        ([candidate("")], "candidates[0].tag"),
        ([candidate("1girl", category="weapon")], "candidates[0].category"),
        ([{"tag": "1girl", "score": float("nan")}], "candidates[0].score"),
        ([candidate("<|eos|>")], "candidates[0].tag"),
    ],
)
def test_bad_candidates_name_the_field(completer, cands, field):
    with pytest.raises(InvalidInput) as err:
        completer.complete(cands, width=1024, height=1024, rating="general")
    assert err.value.field == field


def test_a_batch_of_different_lengths_gives_each_request_its_own_answer(completer):
    from sotai.dart import DartRequest

    requests = [
        DartRequest([candidate("1girl")], 1024, 1024, "general", DartSampling(seed=1, min_new_tokens=4, max_new_tokens=6)),
        DartRequest(CANDIDATES, 832, 1216, "sensitive", DartSampling(seed=2, max_new_tokens=9)),
        DartRequest([candidate("1girl")], 500, 1024, "general", DartSampling(seed=3)),  # invalid width
        DartRequest(CANDIDATES[:2], 1216, 832, "general", DartSampling(seed=4, temperature=0.0, max_new_tokens=3)),
    ]
    batched = completer.complete_batch(requests)
    assert isinstance(batched[2], InvalidInput) and batched[2].field == "width"
    for request, got in zip(requests, batched):
        if isinstance(got, InvalidInput):
            continue
        alone = completer.complete(request.candidates, width=request.width, height=request.height,
                                   rating=request.rating, sampling=request.sampling)
        assert got.prompt == alone.prompt
        assert got.dart_input == alone.dart_input
