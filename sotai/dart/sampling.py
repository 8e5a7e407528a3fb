"""Dart's sampling controls and the per-row token picker (numpy; no torch at serving time).

Order as in transformers' `generate`: mask (banned, repeated, not-allowed tokens) ->
temperature -> top-k -> top-p -> draw with the row's own seeded generator. Each row has its
own generator, so a request gives the same tags alone or batched with others.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace

import numpy as np

from sotai.dart.vocab import IDENTITIES, LENGTHS, normalize_tag
from sotai.errors import InvalidInput
from sotai.limits import SEED_RANGE, TAG_MAX_CHARS, check_choice, check_float, check_int, check_text

TEMPERATURE_RANGE = (0.0, 10.0)  # 0 = greedy
# How many tags Dart adds per length bucket, (at least, at most): the prompt stays readable and
# `very_short` really is short. Explicit min_new_tokens / max_new_tokens override the bucket.
LENGTH_ADDED: dict[str, tuple[int, int]] = {
    "very_short": (1, 3), "short": (2, 6), "medium": (3, 10), "long": (4, 15), "very_long": (6, 25),
}
MAX_NEW_TOKENS_RANGE = (1, 512)
BAN_TAGS_MAX = 256


@dataclass(frozen=True)
class DartSampling:
    """Model-card defaults: temperature 1.0, top_p 1.0, top_k 100.

    seed None (or -1) draws a fresh seed; the one used is reported in `DartResult.seed`.
    ban_tags: tag names or `*` patterns (`* background`, `*_hair`), matched against Dart's
    additions only; the user's own tags are always kept.
    min_new_tokens: end tokens are masked until this many tags were added (benchmarks use it).
    None (the default) for either: the bounds of the length bucket (LENGTH_ADDED).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 100
    seed: int | None = None
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    ban_tags: tuple[str, ...] = field(default_factory=tuple)
    length: str = "long"
    identity: str = "none"

    def checked(self) -> "DartSampling":
        """A copy with every field validated (InvalidInput names the field and its limit)."""
        seed = self.seed
        if seed is not None:
            seed = check_int("seed", seed, *SEED_RANGE)
            seed = None if seed == -1 else seed
        ban = self.ban_tags
        if isinstance(ban, str) or not isinstance(ban, (list, tuple)):
            raise InvalidInput("ban_tags", ban, "must be a list of tag names or * patterns")
        if len(ban) > BAN_TAGS_MAX:
            raise InvalidInput("ban_tags", f"<{len(ban)} patterns>", f"must hold at most {BAN_TAGS_MAX} patterns")
        max_new = None if self.max_new_tokens is None else check_int("max_new_tokens", self.max_new_tokens,
                                                                      *MAX_NEW_TOKENS_RANGE)
        length = check_choice("length", self.length, LENGTHS)
        min_new = None if self.min_new_tokens is None else check_int(
            "min_new_tokens", self.min_new_tokens, 0, max_new if max_new is not None else MAX_NEW_TOKENS_RANGE[1])
        return replace(
            self,
            temperature=check_float("temperature", self.temperature, *TEMPERATURE_RANGE),
            top_p=_check_top_p(self.top_p),
            top_k=check_int("top_k", self.top_k, 0, 1_000_000),
            seed=seed,
            max_new_tokens=max_new,
            min_new_tokens=min_new,
            ban_tags=tuple(check_text(f"ban_tags[{i}]", b, max_chars=TAG_MAX_CHARS).strip() for i, b in enumerate(ban)),
            length=length,
            identity=check_choice("identity", self.identity, IDENTITIES),
        )

    def bounds(self) -> tuple[int, int]:
        """(at least, at most) tags Dart adds: the length bucket's, unless given explicitly."""
        lo, hi = LENGTH_ADDED[self.length]
        hi = self.max_new_tokens if self.max_new_tokens is not None else max(hi, self.min_new_tokens or 0)
        lo = self.min_new_tokens if self.min_new_tokens is not None else min(lo, hi)
        return lo, hi

    def resolved_seed(self) -> int:
        return self.seed if self.seed is not None else secrets.randbelow(SEED_RANGE[1] + 1)


def _check_top_p(value: object) -> float:
    v = check_float("top_p", value, 0.0, 1.0)
    if v == 0.0:
        raise InvalidInput("top_p", value, "must be a number in (0, 1]")
    return v


def ban_pattern(patterns: tuple[str, ...]) -> re.Pattern | None:
    """One regex for all ban patterns, in Dart's spelling; `*` matches any run of characters."""
    if not patterns:
        return None
    parts = [".*".join(re.escape(p) for p in normalize_tag(pat).split("*")) for pat in patterns]
    return re.compile("|".join(f"(?:{p})" for p in parts))


class RowSampler:
    """Picks the next token for one row; owns the row's generator and its mask of spent tokens.

    Work on the whole vocabulary is one add (the 0/-inf mask) and one partition (top-k); the
    rest runs on the k survivors. The draw walks the survivors in token-id order, so logits
    that differ in the last bits (a row alone vs. batched) map a draw to the same token.
    """

    def __init__(self, sampling: DartSampling, seed: int, blocked: np.ndarray, end_ids: list[int], used: set[int],
                 after_take=None):
        """after_take(token) -> ids that may no longer follow it (a second hair colour, 5girls after 1girl)."""
        self.s = sampling
        self.min_new = sampling.bounds()[0]
        self.after_take = after_take
        self.rng = np.random.default_rng(seed)
        self.mask = np.where(blocked, -np.inf, 0.0).astype(np.float32)  # specials (but the ends), bans
        self.mask[list(used)] = -np.inf  # no repeated tags
        self.end_ids = list(end_ids)
        self.n_new = 0

    def pick(self, logits: np.ndarray) -> tuple[int, float]:
        """(token id, its probability under the processed distribution)."""
        x = logits.astype(np.float32) + self.mask
        if self.n_new < self.min_new:
            x[self.end_ids] = -np.inf
        k = self.s.top_k if 0 < self.s.top_k < x.size else x.size
        if self.s.temperature == 0.0:
            k = 1
        idx = top_k_ids(x, k) if k < x.size else np.arange(x.size)
        idx = np.sort(idx[np.isfinite(x[idx])])
        if idx.size == 0:  # everything masked: only ending is left
            return self.end_ids[0], 1.0
        if self.s.temperature == 0.0:
            return self._take(int(idx[0]), 1.0)
        p = _softmax(x[idx].astype(np.float64) / self.s.temperature)
        if self.s.top_p < 1.0:
            order = np.argsort(-p, kind="stable")
            # keep the smallest prefix (by probability) whose mass reaches top_p
            cut = int(np.searchsorted(np.cumsum(p[order]), self.s.top_p)) + 1
            keep = np.sort(order[:cut])
            idx, p = idx[keep], p[keep] / p[keep].sum()
        cdf = np.cumsum(p)
        j = min(int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")), idx.size - 1)
        return self._take(int(idx[j]), float(p[j]))

    def _take(self, tok: int, prob: float) -> tuple[int, float]:
        if tok not in self.end_ids:
            self.mask[tok] = -np.inf
            self.n_new += 1
            if self.after_take is not None:
                self.mask[list(self.after_take(tok))] = -np.inf
        return tok, prob


SUBSAMPLE_STRIDE = 16


def top_k_ids(x: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest entries of x (any order), the same set a full argpartition finds.

    A full argpartition of Dart's 30k logits costs ~0.3 ms per tag (about a tenth of a decode
    step). Every 16th logit gives a threshold that usually leaves a few hundred candidates;
    when at least k entries reach it, the k largest are all among them, so the exact partition
    runs on those only. Otherwise (few finite logits, large k) the full partition runs.
    """
    if k * SUBSAMPLE_STRIDE * 4 <= x.size:
        sample = x[::SUBSAMPLE_STRIDE]
        m = k // SUBSAMPLE_STRIDE + 4  # ~ (m * stride) candidates expected, comfortably more than k
        threshold = np.partition(sample, sample.size - m)[sample.size - m]
        if np.isfinite(threshold):
            candidates = np.flatnonzero(x >= threshold)
            if candidates.size >= k:
                return candidates[np.argpartition(x[candidates], -k)[-k:]]
    return np.argpartition(x, -k)[-k:]


def _softmax(x: np.ndarray) -> np.ndarray:
    m = np.max(x)
    e = np.exp(x - m)
    return e / e.sum()
