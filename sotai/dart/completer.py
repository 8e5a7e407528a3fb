"""`TagCompleter`: RAG candidates -> Dart -> the final tag list and prompt in Animagine's order."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sotai.dart.prompt import (
    CATEGORIES, CATEGORY_NAMES, DartInput, animagine_order, aspect_ratio_name, compose_prompt, join_prompt, prompt_tokens,
)
from sotai.dart.sampling import DartSampling, RowSampler, ban_pattern
from sotai.dart.session import OnnxDecoder
from sotai.dart.vocab import EOS, GENERAL_END, KAOMOJI, PAD, normalize_tag
from sotai.diffusion import emphasis
from sotai.errors import InvalidInput, MissingArtifact, SotaiError
from sotai.limits import CANDIDATES_MAX, RATINGS, TAG_MAX_CHARS, check_choice, check_size, check_text
from sotai.rag import conflicts

DART_REASON = {"span": "", "signal": "dart"}
NOT_IN_VOCAB = "not in Dart's vocabulary: kept as given, Dart did not see it"


@dataclass(frozen=True)
class DartResult:
    """tags: final ordered [{tag, category, score, reason}]; prompt: the same tags joined for SDXL."""

    tags: list[dict]
    prompt: str
    dart_input: str = ""  # the exact dart-v2 prompt Dart completed
    seed: int | None = None  # the sampling seed used (reproduces this result)


@dataclass(frozen=True)
class DartRequest:
    candidates: list[dict]
    width: int
    height: int
    rating: str
    sampling: DartSampling | None = None
    negated: tuple[str, ...] = ()  # tags the text rules out: Dart never adds them


@dataclass
class _Prepared:
    given: list[dict]  # candidate tags in output form
    prompt_ids: list[int]
    dart_input: str
    sampling: DartSampling
    seed: int
    used: set[int] = field(default_factory=set)
    negated: tuple[str, ...] = ()
    clashing: set[int] = field(default_factory=set)  # ids that contradict the given tags


class TagCompleter:
    """Completes RAG candidates with Dart, served from an exported directory (model.onnx + tokenizer files)."""

    def __init__(self, model_dir: Path, providers: list[str] | None = None, *, threads: int = 0):
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        for name in ("model.onnx", "tokenizer.json", "config.json"):
            if not (self.model_dir / name).is_file():
                raise MissingArtifact("Dart model file", self.model_dir / name, "make export")
        # tokenizers.Tokenizer, not AutoTokenizer: the hub's tokenizer_config asks for remote code.
        tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.vocab: dict[str, int] = tokenizer.get_vocab(with_added_tokens=True)
        config = json.loads((self.model_dir / "config.json").read_text())
        self.vocab_size = int(config["vocab_size"])
        self.max_positions = int(config.get("max_position_embeddings", 1024))
        self.id_to_tag = [""] * self.vocab_size
        for tok, i in self.vocab.items():
            if i < self.vocab_size:
                self.id_to_tag[i] = tok
        specials = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
        self.pad_id = self.vocab[PAD]
        self.end_ids = [self.vocab[GENERAL_END], self.vocab[EOS]]
        # Dart may only add tags: every control token except the two that end the list is blocked.
        self.blocked = np.zeros(self.vocab_size, dtype=bool)
        for tok in specials:
            if tok in self.vocab and self.vocab[tok] < self.vocab_size:
                self.blocked[self.vocab[tok]] = True
        self.blocked[[i for i, t in enumerate(self.id_to_tag) if not t]] = True  # ids with no token
        self.blocked[self.end_ids] = False
        self.specials = specials
        # Tags that can contradict others (people counts, hair / eye colours): checked against
        # what a row already holds whenever one of them is given or drawn.
        self.keys = [conflicts.key(t) for t in self.id_to_tag]
        self.id_of_key = {k: i for i, k in enumerate(self.keys) if k and not self.blocked[i]}
        self.watched = [i for i, k in enumerate(self.keys) if k and not self.blocked[i]
                        and (conflicts.family(k) or conflicts.is_count_tag(k))]
        self._ban_cache: dict[tuple[str, ...], np.ndarray] = {}
        self.decoder = OnnxDecoder(self.model_dir / "model.onnx", providers, threads=threads)

    # -- public API --------------------------------------------------------
    def complete(self, candidates: list[dict], *, width: int, height: int, rating: str, sampling: DartSampling | None = None) -> DartResult:
        result = self.complete_batch([DartRequest(candidates, width, height, rating, sampling)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def complete_batch(self, requests: list[DartRequest]) -> list[DartResult | SotaiError]:
        """One Dart run for many requests (Triton's dynamic batch); a bad request gets its own
        InvalidInput in its slot and does not fail the others."""
        prepared: list[_Prepared | SotaiError] = []
        for r in requests:
            try:
                prepared.append(self._prepare(r))
            except SotaiError as exc:
                prepared.append(exc)
        ok = [p for p in prepared if isinstance(p, _Prepared)]
        generated = iter(self._generate(ok) if ok else [])
        return [p if isinstance(p, SotaiError) else self._finish(p, next(generated)) for p in prepared]

    # -- steps -------------------------------------------------------------
    def _prepare(self, r: DartRequest) -> _Prepared:
        check_size("width", r.width)
        check_size("height", r.height)
        rating = check_choice("rating", r.rating, RATINGS)
        sampling = (r.sampling or DartSampling()).checked()
        given = self._check_candidates(r.candidates)
        sections: dict[str, list[str]] = {"copyright": [], "character": [], "general": []}
        for t in given:
            if t["category"] in sections and t["tag"] in self.vocab:
                sections[t["category"]].append(t["tag"])
        d = DartInput(
            copyright=tuple(sections["copyright"]), character=tuple(sections["character"]), general=tuple(sections["general"]),
            rating=rating, aspect_ratio=aspect_ratio_name(int(r.width), int(r.height)),
            length=sampling.length, identity=sampling.identity,
        )
        tokens = prompt_tokens(d)
        missing = [t for t in tokens if t not in self.vocab]
        if missing:
            raise MissingArtifact("Dart tokenizer", self.model_dir / "tokenizer.json", "make export", detail=f"lacks control tokens {missing}")
        ids = [self.vocab[t] for t in tokens]
        most = sampling.bounds()[1]
        if len(ids) + most > self.max_positions:
            raise InvalidInput(
                "candidates", f"<{len(given)} tags>",
                f"prompt ({len(ids)} tokens) + max_new_tokens ({most}) must fit Dart's {self.max_positions} positions",
            )
        used = {self.vocab[t["tag"]] for t in given if t["tag"] in self.vocab}
        negated = tuple(check_text(f"negated[{i}]", n, max_chars=TAG_MAX_CHARS) for i, n in enumerate(r.negated))
        clashing = self._clashing([t["tag"] for t in given], negated)
        return _Prepared(given, ids, compose_prompt(d), sampling, sampling.resolved_seed(), used, negated, clashing)

    def _clashing(self, kept: list[str], negated: tuple[str, ...]) -> set[int]:
        """Vocabulary ids that contradict `kept` or are negated (sotai.rag.conflicts' rules)."""
        keys = [conflicts.key(t) for t in kept]
        near = set(self.watched)
        for k in [*map(conflicts.key, negated), *(f"no_{k}" for k in keys), *(k[3:] for k in keys if k.startswith("no_"))]:
            if k in self.id_of_key:
                near.add(self.id_of_key[k])
        return {i for i in near if conflicts.conflict(self.keys[i], keys, negated=negated) is not None}

    def _check_candidates(self, candidates: object) -> list[dict]:
        if not isinstance(candidates, list):
            raise InvalidInput("candidates", candidates, "must be a list of {tag, score, category, reason} objects")
        if len(candidates) > CANDIDATES_MAX:
            raise InvalidInput("candidates", f"<{len(candidates)} candidates>", f"must hold at most {CANDIDATES_MAX} candidates")
        out, seen = [], set()
        for i, c in enumerate(candidates):
            if not isinstance(c, dict) or "tag" not in c:
                raise InvalidInput(f"candidates[{i}]", c, "must be an object with a 'tag'")
            name = normalize_tag(check_text(f"candidates[{i}].tag", c["tag"], max_chars=TAG_MAX_CHARS))
            if name in self.specials:
                raise InvalidInput(f"candidates[{i}].tag", c["tag"], "must be a tag, not one of Dart's control tokens")
            category = c.get("category", "general")
            category = CATEGORY_NAMES.get(category, category) if isinstance(category, int) else category
            if category not in CATEGORIES:
                raise InvalidInput(f"candidates[{i}].category", c.get("category"), f"must be one of {', '.join(CATEGORIES)} (or 0, 1, 3, 4, 5)")
            score = c.get("score", 1.0)
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise InvalidInput(f"candidates[{i}].score", score, "must be a finite number")
            reason = c.get("reason", {"span": "", "signal": "user"})
            for name, extra in self._weighted(name, c["tag"], reason, f"candidates[{i}].tag"):
                if name in seen:
                    continue  # a duplicate adds nothing; the first (best-ranked) one stays
                seen.add(name)
                why = reason
                if name not in self.vocab:
                    why = {**reason, "dart": NOT_IN_VOCAB} if isinstance(reason, dict) else {"given": reason, "dart": NOT_IN_VOCAB}
                out.append({"tag": name, "category": category, "score": float(score), "reason": why, **extra})
        return out

    def _weighted(self, name: str, given: str, reason: object, field: str) -> list[tuple[str, dict]]:
        """A user's tag in A1111's emphasis syntax -> its plain tags (what Dart reads), each with
        its `weight` and the `group` text the final prompt writes back, once, where the group's
        first tag lands. `(silver_hair, red_eyes:1.2)` -> silver hair, red eyes, one group.

        Only a user's own tags are read so (RAG's are Danbooru names, `yuuki (sao)` among them),
        and not one that is a tag of Dart's vocabulary as written."""
        user = not isinstance(reason, dict) or reason.get("signal", "user") == "user"
        if not user or name in self.vocab or not emphasis.has_emphasis(given):
            return [(name, {})]
        out = []
        for item in emphasis.split_top_level(given):
            pieces = emphasis.parse_attention(item, field)
            members = [(normalize_tag(t.tag), t.weight) for t in emphasis.item_tags(item)]
            if all(w == 1.0 for _, w in pieces):  # escapes only: plain tags, escaped again when joined
                out += [(m, {}) for m, _ in members]
                continue
            kaomoji = any(m in KAOMOJI for m, _ in members)
            group = " ".join(item.split()) if kaomoji else normalize_tag(item)
            out += [(m, {"weight": w, "group": group}) for m, w in members]
        return out or [(name, {})]

    def _generate(self, batch: list[_Prepared]) -> list[list[tuple[int, float]]]:
        samplers = [RowSampler(p.sampling, p.seed, self._blocked_for(p.sampling.ban_tags), self.end_ids,
                               p.used | p.clashing, self._after_take(p)) for p in batch]
        limits = [p.sampling.bounds()[1] for p in batch]
        return self.decoder.generate(
            [p.prompt_ids for p in batch],
            lambda b, logits: samplers[b].pick(logits),
            pad_id=self.pad_id, end_ids=set(self.end_ids),
            max_new_tokens=max(limits),
            limits=limits,
        )

    def _after_take(self, p: _Prepared):
        """For one row: a drawn count or colour tag rules out the ones it contradicts."""
        kept = [t["tag"] for t in p.given]

        def after(tok: int) -> list[int]:
            kept.append(self.id_to_tag[tok])
            if conflicts.family(self.keys[tok]) or conflicts.is_count_tag(self.keys[tok]):
                return sorted(self._clashing(kept, p.negated))
            return []

        return after

    def _finish(self, p: _Prepared, new: list[tuple[int, float]]) -> DartResult:
        added, kept = [], [t["tag"] for t in p.given]
        for t, prob in new:
            # The sampler masks contradictions already; this keeps the rule whatever the decoder did.
            if conflicts.conflict(self.id_to_tag[t], kept, negated=p.negated) is None:
                kept.append(self.id_to_tag[t])
                added.append({"tag": self.id_to_tag[t], "category": "general", "score": round(prob, 6),
                              "reason": dict(DART_REASON)})
        tags = animagine_order(p.given + added)
        return DartResult(tags=tags, prompt=join_prompt(tags), dart_input=p.dart_input, seed=p.seed)

    def _blocked_for(self, ban: tuple[str, ...]) -> np.ndarray:
        if ban not in self._ban_cache:
            blocked = self.blocked.copy()
            pattern = ban_pattern(ban)
            if pattern is not None:
                hits = [i for i, t in enumerate(self.id_to_tag) if t and not blocked[i] and i not in self.end_ids and pattern.fullmatch(t)]
                blocked[hits] = True
            self._ban_cache[ban] = blocked
        return self._ban_cache[ban]
