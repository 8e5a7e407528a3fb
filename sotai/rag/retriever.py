"""Japanese scene text -> ranked Danbooru tag candidates, each with the span and signal behind it.

One query runs these steps:

1. analyze the text (sotai.rag.analysis): spans, counted people, negated spans;
2. people -> count tags (一人の少女 -> 1girl + solo, 二人の少女 -> 2girls + multiple_girls);
3. exact matches of spans against Japanese names (hand-written, then machine) and aliases;
4. JMdict glosses: a span's English glosses that are tag names, and modifier+noun units composed
   from glosses (赤い + リボン -> red_ribbon);
5. embedding similarity of every span to the tag names (vector store search, one batch);
6. negation: tags a negated span leads to are removed (帽子をかぶっていない never yields hat) and
   the tag's `no_` form is proposed when it exists;
7. category rules (meta never; artist only when the text names the artist; characters and
   copyrights not from loose similarity) and one score per tag: best evidence + agreement of
   other signals + a small post-count prior.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sotai.errors import MissingArtifact
from sotai.limits import TOP_K_RANGE, check_int, check_text
from sotai.rag import data as tagdata
from sotai.rag.analysis import Analysis, Span, analyze
from sotai.rag.candidate import Candidate
from sotai.rag.embedding import Embedder, make_embedder
from sotai.rag.index import BUILD_FIX, TagIndex, build_index, read_manifest


@dataclass(frozen=True)
class Weights:
    """How much each kind of evidence counts (scores land in about 0..1.2)."""

    count: float = 1.10          # 一人の少女 -> 1girl: the strongest, most specific evidence
    japanese_name: float = 1.0   # hand-written Japanese name
    alias: float = 0.95          # a Danbooru alias (Japanese or English) written in the text
    machine_name: float = 0.72   # machine-translated Japanese name (some are wrong)
    gloss: float = 0.80          # JMdict gloss that is a tag name
    composed: float = 0.86       # modifier+noun composed from glosses (red + ribbon)
    embedding: float = 0.90      # cosine similarity, rescaled from [sim_floor, 1]
    sim_floor: float = 0.40      # below this cosine a neighbour is noise
    named_sim: float = 0.72      # characters/copyrights need this cosine to come from similarity
    block_sim: float = 0.62      # neighbours this close to a negated span are removed too
    agreement: float = 0.15      # each further signal adds this share of its score
    prior: float = 0.08          # weight of log(post_count) / log(max post_count)
    phrase: float = 0.85         # noun-の-noun phrases are looser than a word


_ARTIST_CUES = re.compile(r"(絵師|作者|画風|イラストレーター|描いた|描く|タッチ|風の絵|風のイラスト|の絵柄|作画|artist|by )",
                          re.IGNORECASE)
_ASCII_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _\-:'()!?.]*[A-Za-z0-9)!?]|[A-Za-z0-9]")
_SPAN_NEIGHBOURS = 12
# How many people are in the picture is decided by the count analysis alone: 少女 must not pull
# 2girls in through similarity, nor 二人 pull solo.
_COUNT_TAGS = re.compile(r"^((\d+|6\+)(girl|boy|other)s?|multiple_(girls|boys|others)|solo|solo_focus|no_humans)$")


@dataclass
class _Evidence:
    score: float
    span: str
    signal: str


class TagRetriever:
    """Retrieves Danbooru tag candidates for Japanese text from a loaded `TagIndex`."""

    def __init__(self, index: TagIndex, embedder: Embedder, weights: Weights | None = None):
        self.index = index
        self.embedder = embedder
        self.weights = weights or Weights()
        table = index.table
        self._tags: list[str] = table["tag"].tolist()
        self._cats: list[str] = table["category"].tolist()
        counts = table["post_count"].to_numpy(dtype=np.float64)
        self._prior = np.log1p(np.maximum(counts, 0)) / max(math.log1p(max(counts.max(initial=1.0), 1.0)), 1e-9)
        self._is_count = [bool(_COUNT_TAGS.match(t)) for t in self._tags]
        self._row_of: dict[str, int] = {}
        self._names: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
        for row, aliases in enumerate(table["aliases"]):
            for a in aliases:
                if tagdata.has_japanese(a):
                    self._names[tagdata.normalize_ja(a)].append((row, "alias", self.weights.alias))
                else:
                    self._row_of.setdefault(a.lower(), row)
        for row, tag in enumerate(self._tags):
            self._row_of[tag.lower()] = row
        for col, weight in (("japanese", self.weights.japanese_name), ("japanese_mt", self.weights.machine_name)):
            for row, names in enumerate(table[col]):
                for n in names:
                    self._names[tagdata.normalize_ja(n)].append((row, "japanese_name", weight))
        self._gloss_rows: dict[str, list[tuple[int, int, bool]]] = defaultdict(list)
        self._gloss_forms: dict[str, list[str]] = defaultdict(list)
        g = index.glosses
        for word, row, form, sense, common in zip(g["word"], g["row"], g["form"], g["sense"], g["common"]):
            if row >= 0:
                self._gloss_rows[word].append((int(row), int(sense), bool(common)))
            elif form not in self._gloss_forms[word]:
                self._gloss_forms[word].append(form)

    # -- construction ---------------------------------------------------

    @classmethod
    def load(cls, index_dir: Path, *, embedding: str | None = None, settings=None,
             embedder: Embedder | None = None) -> "TagRetriever":
        """Load an index directory; the embedder is the one its manifest names unless given."""
        manifest = read_manifest(index_dir)
        embedder = embedder or make_embedder(embedding or manifest["embedding"], settings)
        return cls(TagIndex.load(index_dir, embedding=embedder.name), embedder)

    @classmethod
    def from_settings(cls, settings) -> "TagRetriever":
        """The index at VECTOR_DB_PATH; built there (or under SOTAI_MODELS_DIR) when missing.

        Data: SOTAI_TAG_DATA when set, else the embedded default (text2tags-lib's tag list).
        An existing index built from other data or another embedding raises MissingArtifact.
        """
        embedder = make_embedder(settings.embedding, settings)
        data_dir = Path(settings.tag_data) if settings.tag_data else None
        checksum = tagdata.data_checksum(data_dir)
        if settings.vector_db_path:
            index_dir = Path(settings.vector_db_path)
        else:
            source = "default" if data_dir is None else f"data-{checksum[:12]}"
            safe = re.sub(r"[^A-Za-z0-9.-]+", "_", embedder.name)
            index_dir = Path(settings.models_dir) / "rag-index" / f"{source}-{safe}"
        if not (index_dir / "manifest.json").is_file():
            build_index(data_dir, index_dir, embedding=settings.embedding, embedder=embedder, settings=settings)
        index = TagIndex.load(index_dir, embedding=embedder.name, data_checksum=checksum)
        return cls(index, embedder)

    # -- retrieval --------------------------------------------------------

    def retrieve(self, text: str, top_k: int = 20) -> list[Candidate]:
        text = check_text("text", text)
        top_k = check_int("top_k", top_k, *TOP_K_RANGE)
        a = analyze(text)
        evidence: dict[int, list[_Evidence]] = defaultdict(list)
        blocked: dict[int, str] = {}
        artist_named = bool(_ARTIST_CUES.search(text))

        def add(row: int, score: float, span: str, signal: str, negated: bool = False) -> None:
            if self._is_count[row] and not counting:
                return
            if negated:
                blocked.setdefault(row, span)
            else:
                evidence[row].append(_Evidence(score, span, signal))

        counting = True
        self._count_tags(a, add)
        counting = False
        self._exact(a, add, artist_named)
        self._glosses(a, add)
        self._embedding(a, add)
        self._negations(a, blocked, evidence)

        w = self.weights
        scored: list[Candidate] = []
        for row, evs in evidence.items():
            if row in blocked or not self._allowed(row, evs, artist_named):
                continue
            best_by_signal: dict[str, _Evidence] = {}
            for e in evs:
                if e.signal not in best_by_signal or e.score > best_by_signal[e.signal].score:
                    best_by_signal[e.signal] = e
            ranked = sorted(best_by_signal.values(), key=lambda e: -e.score)
            score = ranked[0].score + w.agreement * sum(e.score for e in ranked[1:]) + w.prior * self._prior[row]
            scored.append(Candidate(self._tags[row], float(score), self._cats[row],
                                    {"span": ranked[0].span, "signal": ranked[0].signal}))
        scored.sort(key=lambda c: (-c.score, c.tag))
        return scored[:top_k]

    # -- signals -----------------------------------------------------------

    def _count_tags(self, a: Analysis, add) -> None:
        total = 0
        first_span = None
        for sex in ("girl", "boy"):
            people = [p for p in a.people if p.sex == sex]
            if not people:
                continue
            counts = [p.count for p in people]
            explicit = [c for c in counts if c is not None and c > 1]
            # 二人の少女 -> 2; 少女たち -> several (None); 少女は…少女の… -> the same one girl.
            n = max(explicit) if explicit else (None if None in counts else 1)
            span = max(people, key=lambda p: len(p.span)).span
            first_span = first_span or span
            total += 2 if n is None else n
            if n is None or n >= 2:
                self._add_tag(f"multiple_{sex}s", self.weights.count * 0.95, span, add)
            if n is not None:
                tag = f"1{sex}" if n == 1 else (f"{n}{sex}s" if n <= 5 else f"6+{sex}s")
                self._add_tag(tag, self.weights.count, span, add)
        if total == 1:
            self._add_tag("solo", self.weights.count * 0.98, first_span, add)

    def _add_tag(self, tag: str, score: float, span: str, add, signal: str = "japanese_name") -> None:
        row = self._row_of.get(tag)
        if row is not None:
            add(row, score, span, signal)

    def _exact(self, a: Analysis, add, artist_named: bool) -> None:
        toks = a.tokens
        n = len(toks)
        for i in range(n):
            for j in range(i, min(n, i + 6)):
                if toks[j].pos1 in ("補助記号", "記号"):
                    break
                if not (toks[i].is_noun or toks[i].is_content or toks[i].pos1 == "接頭辞"):
                    break
                end_ok = toks[j].is_noun or toks[j].is_content
                if not end_ok:
                    continue
                surface = a.text[toks[i].start:toks[j].end]
                keys = {tagdata.normalize_ja(surface)}
                if i == j:
                    keys.add(tagdata.normalize_ja(toks[i].lemma))
                negated = any(t.negated for t in toks[i:j + 1])
                self._match_names(keys, surface, negated, add)
        # Tag names or aliases written in Latin letters (Hatsune Miku, 1girl).
        for m in _ASCII_RUN.finditer(a.text):
            phrase = m.group(0).strip().lower().replace(" ", "_")
            row = self._row_of.get(phrase)
            if row is not None:
                add(row, self.weights.alias, m.group(0), "alias")

    def _match_names(self, keys: set[str], span: str, negated: bool, add) -> None:
        found: dict[int, tuple[str, float]] = {}
        for key in keys:
            for row, signal, weight in self._names.get(key, ()):
                if row not in found or weight > found[row][1]:
                    found[row] = (signal, weight)
        if not found:
            return
        # A span with a general-tag meaning (桜 = cherry_blossoms) is a common word: machine names
        # that read it as a character or artist name are dropped.
        has_general = any(self._cats[r] == "general" for r in found)
        top_prior = max(self._prior[r] for r in found)
        for row, (signal, weight) in found.items():
            if has_general and self._cats[row] != "general" and weight < self.weights.alias:
                continue
            # Among the tags one name stands for, the more used ones are likelier meant.
            rel = self._prior[row] / top_prior if top_prior > 0 else 1.0
            add(row, weight * (0.6 + 0.4 * rel), span, signal, negated)

    def _glosses(self, a: Analysis, add) -> None:
        w = self.weights
        for s in a.spans:
            for key in {s.lemma, s.text}:
                for row, sense, common in self._gloss_rows.get(key, ()):
                    add(row, w.gloss * (0.8 ** sense) * (1.0 if common else 0.9), s.text, "gloss", s.negated)
            if len(s.parts) == 2:
                mods = self._gloss_forms.get(s.parts[0], [])[:3]
                heads = self._gloss_forms.get(s.parts[1], [])[:4] + [
                    self._tags[r] for r, _, _ in self._gloss_rows.get(s.parts[1], [])[:3]]
                for mi, mod in enumerate(mods):
                    for hi, head in enumerate(dict.fromkeys(heads)):
                        for form in (f"{mod}_{head}", f"{mod}_{head}s", f"{mod}_{head}es"):
                            row = self._row_of.get(form)
                            if row is not None and self._cats[row] == "general":
                                add(row, w.composed * (0.92 ** (mi + hi)), s.text, "gloss", s.negated)
                                break

    def _embedding(self, a: Analysis, add) -> None:
        spans = [s for s in a.spans]
        if not spans or len(self.index.store) == 0:
            return
        w = self.weights
        queries = self.embedder.encode([s.text if s.kind != "word" else s.lemma for s in spans])
        scores, ids = self.index.store.search(queries, _SPAN_NEIGHBOURS)
        for s, row_scores, row_ids in zip(spans, scores, ids):
            for sim, row in zip(row_scores, row_ids):
                if row < 0:
                    continue
                sim = float(sim)
                if s.negated:
                    if sim >= w.block_sim:
                        add(int(row), 0.0, s.text, "embedding", True)
                    continue
                if sim < w.sim_floor:
                    continue
                if self._cats[row] in ("character", "copyright") and sim < w.named_sim:
                    continue
                scaled = w.embedding * (sim - w.sim_floor) / (1.0 - w.sim_floor)
                if s.kind == "phrase":
                    scaled *= w.phrase
                add(int(row), scaled, s.text, "embedding")

    def _negations(self, a: Analysis, blocked: dict[int, str], evidence: dict[int, list[_Evidence]]) -> None:
        """Propose `no_<tag>` for a blocked tag when Danbooru has one (no_hat, no_shoes)."""
        for row, span in list(blocked.items()):
            no_row = self._row_of.get(f"no_{self._tags[row]}")
            if no_row is not None and self._cats[no_row] == "general":
                blocked.pop(no_row, None)  # similarity to the negated word may have blocked it
                phrase = next((n for n in a.negations if span in n), span)
                evidence[no_row].append(_Evidence(self.weights.gloss, phrase, "gloss"))

    def _allowed(self, row: int, evs: list[_Evidence], artist_named: bool) -> bool:
        cat = self._cats[row]
        if cat == "meta":
            return False
        if cat == "artist":
            # Named: a Danbooru alias in the text, or a name plus a word that says "artist".
            return any(e.signal == "alias" or (e.signal == "japanese_name" and artist_named) for e in evs)
        return True


def ensure_index(settings) -> Path:
    """Build the index the settings point to when it is missing; return its directory."""
    return TagRetriever.from_settings(settings).index.directory


__all__ = ["TagRetriever", "Weights", "ensure_index", "MissingArtifact", "BUILD_FIX"]
