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
from sotai.rag.index import BUILD_FIX, TagIndex, build_index, cached_index, read_manifest


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
    named_min_chars: int = 2     # ... and a span of a name's length: 夜 alone is no character's name
    block_sim: float = 0.62      # neighbours this close to a negated span are removed too
    agreement: float = 0.15      # each further signal adds this share of its score
    prior: float = 0.08          # weight of log(post_count) / log(max post_count)
    phrase: float = 0.85         # noun-の-noun phrases are looser than a word


_ARTIST_CUES = re.compile(r"(絵師|作者|画風|イラストレーター|描いた|描く|タッチ|風の絵|風のイラスト|の絵柄|作画|artist|by )",
                          re.IGNORECASE)
_ASCII_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _\-:'()!?.]*[A-Za-z0-9)!?]|[A-Za-z0-9]")
_SPAN_NEIGHBOURS = 12
_NAME_MAX_TOKENS = 6
_QUALIFIER = re.compile(r"\([^)]*\)$")
_KANJI = re.compile(r"[\u3400-\u9fff]")
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
                    # アスナ（sao）: the qualifier is Danbooru's, the text just says アスナ.
                    bare = _QUALIFIER.sub("", tagdata.normalize_ja(n))
                    if bare and bare != tagdata.normalize_ja(n) and tagdata.has_japanese(bare):
                        self._names[bare].append((row, "japanese_name", weight * 0.95))
        # JMdict bridge: word -> [(row, sense, common, kind)] and word -> component forms, in JMdict order.
        self._gloss_rows: dict[str, list[tuple[int, int, bool, str]]] = defaultdict(list)
        self._gloss_forms: dict[str, list[str]] = defaultdict(list)
        g = index.glosses
        for word, row, form, sense, common, kind in zip(g["word"], g["row"], g["form"], g["sense"], g["common"],
                                                        g["kind"]):
            if row >= 0:
                self._gloss_rows[word].append((int(row), int(sense), bool(common), kind))
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
            if not (index_dir / "manifest.json").is_file():
                build_index(data_dir, index_dir, embedder=embedder, settings=settings)
        else:  # our own cache: content-addressed by data, embedding and format, so never stale
            index_dir = cached_index(settings.models_dir, data_dir, embedder=embedder, settings=settings)
        index = TagIndex.load(index_dir, embedding=embedder.name, data_checksum=checksum)
        return cls(index, embedder)

    # -- retrieval --------------------------------------------------------

    def retrieve(self, text: str, top_k: int = 20) -> list[Candidate]:
        return self.query(text, top_k).candidates

    def query(self, text: str, top_k: int = 20) -> "Retrieval":
        """The ranked candidates plus what the selection step needs: the tags negation ruled out
        and how many people the text counts."""
        text = check_text("text", text)
        top_k = check_int("top_k", top_k, *TOP_K_RANGE)
        a = analyze(text)
        ev = _Collector(self._is_count)

        # 2. people -> count tags (the only source of 1girl / 2girls / solo ...)
        ev.counting = True
        self._count_tags(a, ev)
        ev.counting = False

        # 3-4. names, aliases and glosses, longest units first; a noun compound that matched
        # (ワンピース) hides its pieces (ワン, ピース).
        artist_named = bool(_ARTIST_CUES.search(a.text))
        # compounds and names matched as a whole: their pieces are skipped (博麗霊夢, not 博 + 麗 + 霊夢)
        hidden: list[tuple[int, int]] = self._scan_names(a, ev) + self._ascii_names(a.text, ev)
        explained: list[tuple[int, int]] = []  # units that matched: their words are not searched alone
        searched: list[Span] = []
        for span in sorted(a.spans, key=lambda s: s.start - s.end):
            if span.person or (len(span.text) == 1 and not _KANJI.match(span.text)):
                continue  # a lone kana is a fragment of an unknown word, not a word
            inside = lambda ranges: any(c0 <= span.start and span.end <= c1 for c0, c1 in ranges)  # noqa: E731
            if inside(hidden):
                continue
            matched, whole = self._direct(span, ev)
            if whole and span.kind == "compound":
                hidden.append((span.start, span.end))
            if matched and span.kind != "word":
                explained.append((span.start, span.end))
            if not matched and span.kind == "word" and span.lemma and len(span.lemma) >= 3:
                searched.extend(self._decompound(span, ev))
            # 長い髪 -> long_hair says what 髪 alone would only guess at (hair_up, hair_down, ...).
            if not span.modifier and not (span.kind == "word" and inside(explained)):
                searched.append(span)

        # 5. similarity of every searched span to the tag names, one batch
        self._embedding(searched, ev)

        # 6. negation
        self._negations(a, ev)

        # 7. one score per tag
        w = self.weights
        scored: list[Candidate] = []
        for row, evs in ev.evidence.items():
            if row in ev.blocked or not self._allowed(row, evs, artist_named):
                continue
            best_by_signal: dict[str, _Evidence] = {}
            for e in evs:
                if e.signal not in best_by_signal or e.score > best_by_signal[e.signal].score:
                    best_by_signal[e.signal] = e
            ranked = sorted(best_by_signal.values(), key=lambda e: -e.score)
            score = ranked[0].score + w.agreement * sum(e.score for e in ranked[1:]) + w.prior * self._prior[row]
            scored.append(Candidate(self._tags[row], float(score), self._cats[row],
                                    {"span": ranked[0].span, "signal": ranked[0].signal},
                                    evidence={e.signal: round(e.score, 4) for e in ranked},
                                    prior=float(self._prior[row])))
        scored.sort(key=lambda c: (-c.score, c.tag))
        blocked = tuple(sorted({self._tags[r] for r in ev.blocked}))
        return Retrieval(scored[:top_k], blocked, _people_count(a))

    # -- signals -----------------------------------------------------------

    def _count_tags(self, a: Analysis, ev: "_Collector") -> None:
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
                self._add_tag(f"multiple_{sex}s", self.weights.count * 0.95, span, ev)
            if n is not None:
                tag = f"1{sex}" if n == 1 else (f"{n}{sex}s" if n <= 5 else f"6+{sex}s")
                self._add_tag(tag, self.weights.count, span, ev)
        if total == 1:
            self._add_tag("solo", self.weights.count * 0.98, first_span, ev)

    def _add_tag(self, tag: str, score: float, span: str, ev: "_Collector") -> None:
        row = self._row_of.get(tag)
        if row is not None:
            ev.add(row, score, span, "japanese_name")

    def _direct(self, span: Span, ev: "_Collector") -> tuple[bool, bool]:
        """Names, aliases, glosses and composed glosses of one span -> (matched, matched as a whole).

        "As a whole" = a name or a full gloss of the span itself, not a guess from its parts.
        """
        named = self._names_for(span, ev)
        glossed, whole_gloss = self._glosses_for(span, ev, named)
        composed = self._compose(span, ev) if len(span.parts) == 2 else False
        return bool(named) or glossed or composed, bool(named) or whole_gloss

    def _names_for(self, span: Span, ev: "_Collector") -> set[int]:
        found: dict[int, tuple[str, float]] = {}
        for key in span.keys:
            for row, signal, weight in self._names.get(tagdata.normalize_ja(key), ()):
                if row not in found or weight > found[row][1]:
                    found[row] = (signal, weight)
        if not found:
            return set()
        # A span with a general-tag meaning (桜 = cherry_blossoms) is a common word: machine names
        # that read it as a character or artist name are dropped.
        has_general = any(self._cats[r] == "general" for r in found)
        top_prior = max(self._prior[r] for r in found)
        kept = set()
        for row, (signal, weight) in found.items():
            if has_general and self._cats[row] != "general" and weight < self.weights.alias:
                continue
            if not has_general and self._cats[row] in ("character", "copyright"):
                # A machine-transliterated character name (初音ミク) that is no common word is
                # rarely a mistranslation: as trustworthy as a written alias.
                weight = max(weight, self.weights.alias * 0.95)
            # Among the tags one name stands for, the more used ones are likelier meant.
            rel = self._prior[row] / top_prior if top_prior > 0 else 1.0
            ev.add(row, weight * (0.6 + 0.4 * rel), span.text, signal, span.negated)
            kept.add(row)
        return kept

    def _glosses_for(self, span: Span, ev: "_Collector", named: set[int]) -> tuple[bool, bool]:
        w = self.weights
        hit = whole = False
        for key in span.keys:
            for row, sense, common, kind in self._gloss_rows.get(key, ()):
                score = w.gloss * (0.8 ** sense) * (1.0 if common else 0.9) * (0.7 if kind == "head" else 1.0)
                if named and row not in named:
                    score *= 0.75  # the span's own Japanese name already says which sense is meant
                ev.add(row, score, span.text, "gloss", span.negated)
                hit = True
                whole = whole or kind == "full"
        return hit, whole

    def _forms(self, word: str) -> list[str]:
        return self._gloss_forms.get(word, [])

    def _compose(self, span: Span, ev: "_Collector") -> bool:
        """Tag names built from the glosses of a unit's two parts (red+ribbon, holding+umbrella)."""
        first, second = span.parts
        if span.kind == "action":
            verbs = self._forms(first)[:6]
            objects = self._forms(second)[:3] + [self._tags[r] for r, _, _, k in self._gloss_rows.get(second, [])[:3]
                                                  if k == "full"]
            pairs = [(v, o) for v in verbs for o in dict.fromkeys(objects)]
        else:
            mods = self._forms(first)[:3]
            heads = self._forms(second)[:4] + [self._tags[r] for r, _, _, k in self._gloss_rows.get(second, [])[:3]
                                               if k == "full"]
            pairs = [(m, h) for m in mods for h in dict.fromkeys(heads)]
        hit = False
        for rank, (x, y) in enumerate(pairs):
            for form in (f"{x}_{y}", f"{x}_{y}s", f"{x}_{y}es"):
                row = self._row_of.get(form)
                if row is not None and self._cats[row] == "general":
                    ev.add(row, self.weights.composed * (0.95 ** min(rank, 6)), span.text, "gloss", span.negated)
                    hit = True
                    break
        return hit

    def _decompound(self, span: Span, ev: "_Collector") -> list[Span]:
        """Split an unknown word into two known ones (ひまわり畑 -> ひまわり + 畑) and match both."""
        word = span.lemma
        best = None
        for k in range(1, len(word)):
            left, right = word[:k], word[k:]
            if self._known(left) and self._known(right):
                if best is None or min(len(left), len(right)) > min(len(best[0]), len(best[1])):
                    best = (left, right)
        if best is None:
            return []
        left, right = best
        subs = [Span(left, span.start, span.start + len(left), "word", lemma=left, negated=span.negated),
                Span(right, span.start + len(left), span.end, "word", lemma=right, negated=span.negated)]
        for sub in subs:
            self._direct(sub, ev)
        self._compose(Span(span.text, span.start, span.end, "compound", lemma=word, parts=best,
                           negated=span.negated), ev)
        return subs

    def _known(self, word: str) -> bool:
        return len(word) >= 1 and (word in self._gloss_rows or tagdata.normalize_ja(word) in self._names) \
            and (len(word) >= 2 or word in self._gloss_rows)

    def _ascii_names(self, text: str, ev: "_Collector") -> list[tuple[int, int]]:
        """Tag names or aliases written in Latin letters (Hatsune Miku, wlop); -> matched ranges."""
        found = []
        for m in _ASCII_RUN.finditer(text):
            row = self._row_of.get(m.group(0).strip().lower().replace(" ", "_"))
            if row is not None:
                ev.add(row, self.weights.alias, m.group(0), "alias")
                found.append((m.start(), m.end()))
        return found

    def _scan_names(self, a: Analysis, ev: "_Collector") -> list[tuple[int, int]]:
        """Names written across several tokens (博麗霊夢, セーラー服), longest first; -> matched ranges.

        unidic splits names it does not know into pieces, so names of 3+ characters are looked up
        on the text between any two token boundaries, not only on the analyzer's units.
        """
        toks, found, i = a.tokens, [], 0
        while i < len(toks):
            matched = False
            for j in range(min(len(toks), i + _NAME_MAX_TOKENS) - 1, i, -1):
                start, end = toks[i].start, toks[j].end
                surface = a.text[start:end]
                if len(surface) < 3 or any(t.pos1 in ("補助記号", "助詞", "助動詞") for t in (toks[i], toks[j])):
                    continue
                if tagdata.normalize_ja(surface) in self._names:
                    span = Span(surface, start, end, "compound", lemma=surface,
                                negated=any(t.negated for t in toks[i:j + 1]))
                    if self._names_for(span, ev):
                        # A noun compound (セーラー服, 博麗霊夢) hides its pieces; a phrase such as
                        # 雪が降る (snowing) does not: 雪 is still snow.
                        if all(t.is_noun for t in toks[i:j + 1]):
                            found.append((start, end))
                        i, matched = j + 1, True
                        break
            if not matched:
                i += 1
        return found

    def _embedding(self, spans: list[Span], ev: "_Collector") -> None:
        queries: dict[str, list[Span]] = {}
        for s in spans:
            key = s.lemma if s.kind in ("word", "action") else s.text
            queries.setdefault(key, []).append(s)
        if not queries or len(self.index.store) == 0:
            return
        w = self.weights
        vectors = self.embedder.encode(list(queries))
        scores, ids = self.index.store.search(vectors, _SPAN_NEIGHBOURS)
        for group, row_scores, row_ids in zip(queries.values(), scores, ids):
            for s in group:
                for sim, row in zip(row_scores, row_ids):
                    if row < 0:
                        continue
                    sim = float(sim)
                    if s.negated:
                        if sim >= w.block_sim:
                            ev.add(int(row), 0.0, s.text, "embedding", True)
                        continue
                    if sim < w.sim_floor:
                        continue
                    if self._cats[row] in ("character", "copyright") and (
                            sim < w.named_sim or len(s.text) < w.named_min_chars):
                        continue
                    scaled = w.embedding * (sim - w.sim_floor) / (1.0 - w.sim_floor)
                    if s.kind == "phrase":
                        scaled *= w.phrase
                    ev.add(int(row), scaled, s.text, "embedding")

    def _negations(self, a: Analysis, ev: "_Collector") -> None:
        """Propose `no_<tag>` for a blocked tag when Danbooru has one (no_hat, no_shoes)."""
        for row, span in list(ev.blocked.items()):
            no_row = self._row_of.get(f"no_{self._tags[row]}")
            if no_row is not None and self._cats[no_row] == "general":
                ev.blocked.pop(no_row, None)  # similarity to the negated word may have blocked it
                phrase = next((n for n in a.negations if span in n), span)
                ev.evidence[no_row].append(_Evidence(self.weights.gloss, phrase, "gloss"))

    def _allowed(self, row: int, evs: list[_Evidence], artist_named: bool) -> bool:
        cat = self._cats[row]
        if cat == "meta":
            return False
        if cat == "artist":
            # Named: a Danbooru alias in the text, or a name plus a word that says "artist".
            return any(e.signal == "alias" or (e.signal == "japanese_name" and artist_named) for e in evs)
        return True


@dataclass(frozen=True)
class Retrieval:
    """One query's answer: ranked candidates, the tags negation ruled out, and the people counted
    (None: several, 0: none written)."""

    candidates: list[Candidate]
    negated: tuple[str, ...]
    people: int | None


def _people_count(a: Analysis) -> int | None:
    total = 0
    for sex in ("girl", "boy"):
        counts = [p.count for p in a.people if p.sex == sex]
        if not counts:
            continue
        explicit = [c for c in counts if c is not None and c > 1]
        if explicit:
            total += max(explicit)
        elif None in counts:
            return None
        else:
            total += 1
    return total


class _Collector:
    """Evidence per table row for one query, and the rows negation removed."""

    def __init__(self, is_count: list[bool]):
        self.evidence: dict[int, list[_Evidence]] = defaultdict(list)
        self.blocked: dict[int, str] = {}
        self.counting = False
        self._is_count = is_count

    def add(self, row: int, score: float, span: str, signal: str, negated: bool = False) -> None:
        if self._is_count[row] and not self.counting:
            return
        if negated:
            self.blocked.setdefault(row, span)
        else:
            self.evidence[row].append(_Evidence(score, span, signal))


def ensure_index(settings) -> Path:
    """Build the index the settings point to when it is missing; return its directory."""
    return TagRetriever.from_settings(settings).index.directory


__all__ = ["Retrieval", "TagRetriever", "Weights", "ensure_index", "MissingArtifact", "BUILD_FIX"]
