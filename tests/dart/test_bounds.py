"""Dart stays in bounds: as many additions as the length bucket says, none contradicting the given tags."""

from __future__ import annotations

import pytest

from sotai.dart import DartSampling
from sotai.dart.completer import DART_REASON
from sotai.dart.sampling import LENGTH_ADDED
from sotai.dart.vocab import LENGTHS
from sotai.rag import conflicts

from .conftest import candidate


def added(result):
    return [t["tag"] for t in result.tags if t["reason"] == DART_REASON]


def complete(completer, cands, negated=(), **kw):
    from sotai.dart.completer import DartRequest

    [result] = completer.complete_batch([DartRequest(cands, 1024, 1024, "general", DartSampling(**kw), tuple(negated))])
    assert not isinstance(result, Exception), result
    return result


def test_every_bucket_adds_at_least_one_tag_and_fewer_for_shorter_buckets():
    assert set(LENGTH_ADDED) == set(LENGTHS)
    ordered = [LENGTH_ADDED[n] for n in LENGTHS]
    assert all(lo >= 1 and lo <= hi for lo, hi in ordered)
    assert [hi for _, hi in ordered] == sorted(hi for _, hi in ordered) and ordered[0][1] <= 5


@pytest.mark.parametrize("length", LENGTHS)
def test_the_number_of_added_tags_follows_the_length_bucket(completer, length):
    lo, hi = LENGTH_ADDED[length]
    counts = [len(added(complete(completer, [candidate("1girl"), candidate("smile")], seed=s, length=length)))
              for s in range(6)]
    assert all(lo <= n <= hi for n in counts), (length, counts)


def test_explicit_token_limits_override_the_bucket(completer):
    result = complete(completer, [candidate("smile")], seed=3, length="very_short", min_new_tokens=8, max_new_tokens=8)
    assert len(added(result)) == 8


def test_additions_never_contradict_the_given_tags_or_the_negations(completer):
    given = [candidate("1girl"), candidate("solo"), candidate("silver_hair"), candidate("red_eyes")]
    for seed in range(6):
        new = added(complete(completer, given, negated=["hat"], seed=seed, min_new_tokens=20, max_new_tokens=20))
        assert len(new) == 20
        assert not {"2girls", "1boy", "black hair", "blue eyes", "hat"} & set(new), new


def test_additions_do_not_contradict_each_other(completer):
    for seed in range(6):
        new = added(complete(completer, [candidate("smile")], seed=seed, min_new_tokens=25, max_new_tokens=25))
        assert conflicts.counts_agree(new), new
        for fam in ("hair colour", "eye colour", "hair length"):
            assert sum(conflicts.family(t) == fam for t in new) <= 1, (fam, new)
