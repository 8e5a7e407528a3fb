"""Sampling controls: temperature, top-k, top-p, seed, bans with `*`, no repeats, stopping."""

import numpy as np
import pytest

from sotai.dart import DartSampling
from sotai.dart.completer import DART_REASON
from sotai.dart.sampling import RowSampler, ban_pattern
from sotai.errors import InvalidInput

from .conftest import candidate

V = 8
END = [0, 1]
LOGITS = np.array([-1.0, -1.0, 4.0, 3.0, 2.0, 1.0, 0.0, -5.0])


def sampler(seed=0, blocked=(), used=(), **kw):
    mask = np.zeros(V, dtype=bool)
    mask[list(blocked)] = True
    return RowSampler(DartSampling(**kw).checked(), seed, mask, END, set(used))


def draws(n=400, **kw):
    s = sampler(**kw)
    initial = s.mask.copy()
    out = []
    for _ in range(n):
        tok, _ = s.pick(LOGITS)
        s.mask[tok] = initial[tok]  # put the drawn tag back: the distribution stays fixed for counting
        out.append(tok)
    return np.bincount(out, minlength=V)


def test_temperature_zero_is_greedy():
    assert sampler(temperature=0.0).pick(LOGITS)[0] == 2


def test_top_k_keeps_only_the_k_best():
    counts = draws(top_k=2)
    assert set(np.nonzero(counts)[0]) == {2, 3}


def test_top_p_keeps_the_smallest_set_reaching_p():
    p = np.exp(LOGITS) / np.exp(LOGITS).sum()
    assert p[2] < 0.8 < p[2] + p[3]
    counts = draws(top_p=0.8)
    assert set(np.nonzero(counts)[0]) == {2, 3}


def test_higher_temperature_flattens():
    cold, hot = draws(temperature=0.3), draws(temperature=3.0)
    assert cold[2] > hot[2]
    assert np.count_nonzero(hot) > np.count_nonzero(cold)


def test_same_seed_same_draws():
    a = [sampler(seed=3).pick(LOGITS)[0] for _ in range(5)]
    b = [sampler(seed=3).pick(LOGITS)[0] for _ in range(5)]
    assert a == b


def test_a_tag_is_never_picked_twice():
    s = sampler(temperature=0.0)
    picked = [s.pick(LOGITS)[0] for _ in range(5)]
    assert picked[:5] == [2, 3, 4, 5, 6]


def test_end_tokens_wait_for_min_new_tokens():
    logits = np.array([9.0, 9.0, 0, 0, 0, 0, 0, 0])
    s = sampler(temperature=0.0, min_new_tokens=2)
    assert s.pick(logits)[0] not in END
    assert s.pick(logits)[0] not in END
    assert s.pick(logits)[0] in END


def test_blocked_and_used_tokens_are_never_drawn():
    counts = draws(blocked=[2], used=[3])
    assert counts[2] == counts[3] == 0


def test_ban_patterns_use_star_as_wildcard_and_danbooru_spelling():
    pat = ban_pattern(("* background", "red_eyes", "hat"))
    assert pat.fullmatch("white background") and pat.fullmatch("gradient background")
    assert pat.fullmatch("red eyes") and pat.fullmatch("hat")
    assert not pat.fullmatch("background") and not pat.fullmatch("hat ribbon") and not pat.fullmatch("hair ribbon")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"temperature": -0.1}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
     ({"top_k": -1}, "top_k"), ({"max_new_tokens": 0}, "max_new_tokens"), ({"length": "huge"}, "length"),
     ({"identity": "loose"}, "identity"), ({"seed": 2**32}, "seed"), ({"ban_tags": "hat"}, "ban_tags"),
     ({"min_new_tokens": 9, "max_new_tokens": 8}, "min_new_tokens")],
)
def test_bad_sampling_names_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as err:
        DartSampling(**kwargs).checked()
    assert err.value.field == field


# -- through the completer ---------------------------------------------------

CANDS = [candidate("1girl"), candidate("white_background"), candidate("smile")]


def added(result):
    return [t["tag"] for t in result.tags if t["reason"] == DART_REASON]


def complete(completer, cands=CANDS, **kw):
    return completer.complete(cands, width=1024, height=1024, rating="general", sampling=DartSampling(**kw))


def test_banned_tags_are_never_added_but_the_users_stay(completer):
    for seed in range(6):
        result = complete(completer, seed=seed, min_new_tokens=20, max_new_tokens=20, ban_tags=("* background", "hat"))
        new = added(result)
        assert len(new) == 20
        assert not [t for t in new if t.endswith(" background") or t == "hat"]
        assert "white background" in result.prompt.split(", ")


def test_no_tag_appears_twice(completer):
    result = complete(completer, seed=1, min_new_tokens=25, max_new_tokens=25)
    names = [t["tag"] for t in result.tags]
    assert len(names) == len(set(names))
    assert not {"1girl", "white background", "smile"} & set(added(result))


def test_generation_stops_at_max_new_tokens(completer):
    for n in (1, 3, 7):
        # min_new_tokens = n masks the end tokens, so the limit is what stops it: exactly n, not "at most".
        assert len(added(complete(completer, seed=2, min_new_tokens=n, max_new_tokens=n))) == n
        assert len(added(complete(completer, seed=2, min_new_tokens=1, max_new_tokens=n))) in range(1, n + 1)


def test_min_new_tokens_holds_the_end_back(completer):
    for seed in range(6):
        assert len(added(complete(completer, seed=seed, min_new_tokens=5, max_new_tokens=30))) >= 5


def test_generation_ends_at_end_tokens_not_at_the_limit(completer):
    lengths = {len(added(complete(completer, seed=s, max_new_tokens=30))) for s in range(12)}
    assert min(lengths) < 30  # the tiny model samples </general> or <|eos|> within 30 steps for some seed


def test_greedy_ignores_the_seed(completer):
    assert complete(completer, temperature=0.0, seed=1).prompt == complete(completer, temperature=0.0, seed=2).prompt


def test_top_k_one_is_greedy(completer):
    assert complete(completer, top_k=1, seed=5).prompt == complete(completer, temperature=0.0).prompt


@pytest.mark.parametrize("k", [1, 5, 100, 400, 5000])
def test_top_k_ids_finds_the_same_set_as_a_full_partition(k):
    from sotai.dart.sampling import top_k_ids

    rng = np.random.default_rng(k)
    for trial in range(20):
        x = rng.standard_normal(30649).astype(np.float32) * rng.uniform(0.1, 10)
        x[rng.choice(x.size, int(rng.integers(0, 30000)), replace=False)] = -np.inf  # spent, banned, blocked
        finite = np.flatnonzero(np.isfinite(x))
        expected = set(finite[np.argsort(-x[finite], kind="stable")[:k]].tolist())
        got = top_k_ids(x, k)
        assert len(got) == k
        assert set(got.tolist()) & set(finite.tolist()) == expected, f"trial {trial}"
