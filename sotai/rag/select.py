"""Ranked RAG candidates -> the tags the text supports (`sotai tags --stage select`).

Retrieval is tuned for recall (the gold tags are among the top 20), so most candidates are not
what the text says: 微笑む brings smile but also evil_smile and crazy_smile. `select()` keeps:

1. the tags with a calibrated confidence >= the threshold. Confidence is a logistic model over the
   candidate's evidence: retrieval score, the best score of each signal (Japanese name, alias,
   JMdict gloss, embedding), how many signals agree, its rank among the candidates of its span,
   count tag or not, span length, post-count prior. Weights and threshold are data
   (select_calibration.py), fitted on the calibration dev set by `python -m sotai.rag.select`;
2. one tag per concept: most confident first, a candidate from the same span as a kept tag with
   the same head word or exclusive family (smile / evil_smile; grey_hair / white_hair) is a variant;
3. no contradiction (sotai.rag.conflicts): people counts, one hair / eye colour per person unless
   the text says two (heterochromia), nothing the text negates;
4. the most specific tag: a general tag another kept tag implies is dropped (holding_umbrella and
   red_umbrella carry umbrella);
5. prompt order: people counts (1girl, multiple_girls, solo), characters, copyrights, artists, then
   general, most confident first.

Every candidate not kept stays a suggestion, with the reason it was not kept.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from sotai.rag import conflicts
from sotai.rag.candidate import Candidate

CALIBRATION_FILE = Path(__file__).with_name("select_calibration.py")
FEATURES = ("bias", "score", "japanese_name", "alias", "gloss", "embedding", "agreeing_signals", "first_of_span",
            "third_or_later_of_span", "span_candidates", "covered", "count_tag", "span_length", "prior", "gloss_first", "embedding_first")
# The evidence looks different with and without Japanese tag names (the embedded default has none:
# a JMdict gloss is its strongest lexical signal), so each kind of data has its own calibration.
PROFILES = ("with_names", "glosses_only")
_QUALIFIER = re.compile(r"_\([^)]*\)$")
_ORDER = {"people": 0, "character": 1, "copyright": 2, "artist": 3, "general": 4, "meta": 5}


@dataclass(frozen=True)
class Calibration:
    weights: tuple[float, ...]
    threshold: float

    @classmethod
    def load(cls, profile: str = "with_names", path: Path = CALIBRATION_FILE) -> "Calibration":
        data = read_calibration(path)
        if tuple(data["features"]) != FEATURES or profile not in data["profiles"]:
            raise ValueError(f"{path}: features {data['features']} / profiles {list(data.get('profiles', {}))} "
                             f"are not {list(FEATURES)} / {list(PROFILES)}: refit with `python -m sotai.rag.select`")
        entry = data["profiles"][profile]
        return cls(tuple(float(w) for w in entry["weights"]), float(entry["threshold"]))


def read_calibration(path: Path = CALIBRATION_FILE) -> dict:
    """The CALIBRATION literal of a calibration module (read as data, never executed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "CALIBRATION")
    return ast.literal_eval(node.value)


def write_calibration(data: dict, path: Path = CALIBRATION_FILE) -> None:
    path.write_text(
        '"""The selection step\'s calibration: logistic weights per feature and threshold, per kind of data.\n\n'
        'Data, written by `python -m sotai.rag.select` (refit there, do not edit by hand). A Python module\n'
        'rather than a JSON file so that every install (wheel, image) carries it.\n"""\n\n'
        f"CALIBRATION = {json.dumps(data, indent=1)}\n", encoding="utf-8")


@lru_cache(maxsize=len(PROFILES))
def default_calibration(profile: str = "with_names") -> Calibration:
    return Calibration.load(profile)


def profile_of(retriever) -> str:
    """with_names when the index has Japanese tag names (the full data), else glosses_only."""
    table = retriever.index.table
    has_names = any(len(v) for col in ("japanese", "japanese_mt") for v in table[col])
    return "with_names" if has_names else "glosses_only"


@dataclass
class Selection:
    """tags: the selected tags in prompt order; suggestions: the other candidates, best first, each
    with `reason["not_selected"]`; negated: tags the text rules out (Dart must not add them)."""

    tags: list[dict]
    suggestions: list[dict] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"tags": self.tags, "suggestions": self.suggestions, "negated": self.negated}


def head(tag: str) -> str:
    """The word a tag name ends in, its concept: evil_smile -> smile, bow_(weapon) -> bow."""
    return _QUALIFIER.sub("", tag).split("_")[-1]


def implies(specific: str, general: str) -> bool:
    """Danbooru's naming of specific tags: holding_umbrella and red_umbrella carry umbrella, and a
    verb's specific forms carry the verb (holding_umbrella -> holding, sitting_on_bench -> sitting);
    no_shoes carries no shoes."""
    if specific == general or specific.startswith("no_") or conflicts.is_count_tag(general):
        return False
    return specific.endswith("_" + general) or (general.endswith("ing") and specific.startswith(general + "_"))


def concept(tag: str) -> str:
    return conflicts.family(tag) or head(tag)


def features(candidates: list[Candidate]) -> np.ndarray:
    """One row of FEATURES per candidate (candidates best first)."""
    # Ranks within a span count the tags that compete for its meaning: the people-count tags a
    # role noun also yields (メイド -> 1girl, solo, maid) do not.
    seen_in_span: dict[str, int] = {}
    per_span: dict[str, int] = {}
    for c in candidates:
        if not conflicts.is_count_tag(c.tag):
            per_span[str(c.reason.get("span", ""))] = per_span.get(str(c.reason.get("span", "")), 0) + 1
    rows = []
    spans = [str(c.reason.get("span", "")) for c in candidates]
    for c in candidates:
        span = str(c.reason.get("span", ""))
        # part of a longer unit that was searched too (服 in メイド服, 手 in 手を振っ): often a fragment
        covered = float(bool(span) and any(span != o and span in o for o in spans))
        rank = seen_in_span.get(span, 0)
        if not conflicts.is_count_tag(c.tag):
            seen_in_span[span] = rank + 1
        e = c.evidence
        first = float(rank == 0)
        f = {"bias": 1.0, "score": c.score, "japanese_name": e.get("japanese_name", 0.0), "alias": e.get("alias", 0.0),
             "gloss": e.get("gloss", 0.0), "embedding": e.get("embedding", 0.0), "agreeing_signals": max(len(e) - 1, 0),
             "first_of_span": first, "third_or_later_of_span": float(rank >= 2),
             "span_candidates": min(per_span.get(span, 1), 10) / 10, "covered": covered,
             "count_tag": float(conflicts.is_count_tag(c.tag)), "span_length": min(len(span), 6) / 6, "prior": c.prior,
             "gloss_first": e.get("gloss", 0.0) * first, "embedding_first": e.get("embedding", 0.0) * first}
        rows.append([f[name] for name in FEATURES])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES))


def confidences(candidates: list[Candidate], calibration: Calibration) -> np.ndarray:
    if not candidates:
        return np.zeros(0)
    z = features(candidates) @ np.asarray(calibration.weights)
    return 1.0 / (1.0 + np.exp(-z))


def select(candidates: list[Candidate], *, negated: tuple[str, ...] | list[str] = (), people: int | None = 1,
           calibration: Calibration | None = None) -> Selection:
    """The selection from one query's ranked candidates (`TagRetriever.query(...)` gives all three)."""
    cal = calibration or default_calibration()
    conf = confidences(candidates, cal)
    capacity = 2 if people is None else max(people, 1)
    order = sorted(range(len(candidates)), key=lambda i: (-conf[i], i))
    kept: list[int] = []
    why_not: dict[int, str] = {}
    for i in order:
        c = candidates[i]
        if conf[i] < cal.threshold:
            why_not[i] = f"confidence {conf[i]:.2f} < {cal.threshold:.2f}"
            continue
        span = c.reason.get("span", "")
        variant = next((candidates[j] for j in kept if candidates[j].reason.get("span", "") == span
                        and concept(candidates[j].tag) == concept(c.tag)), None)
        if variant is not None:
            why_not[i] = f"same concept as {variant.tag} (from 「{span}」)"
            continue
        clash = conflicts.conflict(c.tag, [candidates[j].tag for j in kept], negated=negated, capacity=capacity)
        if clash:
            why_not[i] = clash
            continue
        kept.append(i)
    # 4. the most specific tag: umbrella goes when holding_umbrella is kept
    names = {candidates[j].tag for j in kept if candidates[j].category == "general"}
    for j in list(kept):
        c = candidates[j]
        by = next((n for n in sorted(names) if implies(n, c.tag)), None)
        if by is not None and c.category == "general":
            kept.remove(j)
            why_not[j] = f"implied by {by}"

    def group(i: int) -> int:
        c = candidates[i]
        return _ORDER["people"] if conflicts.is_count_tag(c.tag) else _ORDER.get(c.category, _ORDER["general"])

    kept.sort(key=lambda i: (group(i), _people_rank(candidates[i].tag), -conf[i], i))
    tags = [_entry(candidates[i], conf[i]) for i in kept]
    suggestions = [_entry(candidates[i], conf[i], why_not.get(i, "")) for i in order if i not in kept]
    return Selection(tags, suggestions, sorted(set(negated)))


def _people_rank(tag: str) -> int:
    """Within the counts: 1girl / 2boys first, then multiple_girls, then solo (Animagine's order)."""
    if not conflicts.is_count_tag(tag):
        return 0
    return 2 if tag in ("solo", "no_humans") else 1 if tag.startswith("multiple_") else 0


def _entry(c: Candidate, confidence: float, not_selected: str = "") -> dict:
    d = c.to_dict()
    d["score"] = round(float(confidence), 4)
    d["reason"]["retrieval_score"] = round(float(c.score), 4)
    if not_selected:
        d["reason"]["not_selected"] = not_selected
    return d


def select_text(retriever, text: str, top_k: int = 20, calibration: Calibration | None = None) -> Selection:
    """Retrieve, then select: what `sotai tags --stage select` and the Triton `rag` model output."""
    r = retriever.query(text, top_k)
    cal = calibration or default_calibration(profile_of(retriever))
    return select(r.candidates, negated=r.negated, people=r.people, calibration=cal)


# -- calibration ------------------------------------------------------------------

def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 400) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method (no bias penalty); a few features only."""
    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) / len(y) + reg * w
        hess = (x.T * (p * (1 - p))) @ x / len(y) + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def score_selection(selected: list[str], item: dict) -> tuple[int, int, int, int]:
    """-> (selected, selected in gold or acceptable, gold, gold selected or implied by a selected tag)."""
    ok = set(item["gold"]) | set(item.get("acceptable", ()))
    found = sum(g in selected or any(implies(t, g) for t in selected) for g in item["gold"])
    return len(selected), sum(t in ok for t in selected), len(item["gold"]), found


def evaluate(queries: list[tuple], items: list[dict], calibration: Calibration) -> dict:
    """queries: one Retrieval per item (any number of data sets, concatenated) -> precision, recall."""
    totals = np.zeros(4, dtype=np.int64)
    errors = []
    for r, item in zip(queries, items):
        tags = [t["tag"] for t in select(r.candidates, negated=r.negated, people=r.people,
                                         calibration=calibration).tags]
        totals += score_selection(tags, item)
        ok = set(item["gold"]) | set(item.get("acceptable", ()))
        wrong = [t for t in tags if t not in ok]
        missed = [g for g in item["gold"] if g not in tags and not any(implies(t, g) for t in tags)]
        if wrong or missed:
            errors.append(f"{item['text']}: wrong {wrong} missed {missed}")
    n, right, gold, found = (int(v) for v in totals)
    return {"precision": right / max(n, 1), "recall": found / max(gold, 1), "tags_per_text": n / max(len(items), 1),
            "errors": errors}


def brier(queries: list, items: list[dict], calibration: Calibration) -> float:
    """Mean squared error of the confidences against "in gold or acceptable", over every candidate:
    how well calibrated the confidence is (0 = perfect; always saying 0.5 gives 0.25)."""
    errors = []
    for r, item in zip(queries, items):
        ok = set(item["gold"]) | set(item.get("acceptable", ()))
        p = confidences(r.candidates, calibration)
        errors += [(float(pi) - (c.tag in ok)) ** 2 for pi, c in zip(p, r.candidates)]
    return float(np.mean(errors)) if errors else 0.0


def fit(queries: list, items: list[dict], min_precision: float = 0.9) -> tuple[Calibration, dict]:
    """Fit the weights on every candidate (label: in gold or acceptable), then the threshold: the
    lowest that keeps pooled precision >= min_precision (most recall), else the best F0.5."""
    xs, ys = [], []
    for r, item in zip(queries, items):
        ok = set(item["gold"]) | set(item.get("acceptable", ()))
        if r.candidates:
            xs.append(features(r.candidates))
            ys.append([float(c.tag in ok) for c in r.candidates])
    w = fit_logistic(np.vstack(xs), np.concatenate(ys))
    best, best_key = None, None
    for t in np.arange(0.20, 0.86, 0.01):
        cal = Calibration(tuple(float(v) for v in w), round(float(t), 2))
        m = evaluate(queries, items, cal)
        p, r = m["precision"], m["recall"]
        f05 = 1.25 * p * r / max(0.25 * p + r, 1e-9)
        k = (p >= min_precision, r if p >= min_precision else f05)
        if best_key is None or k > best_key:
            best, best_key = (cal, m), k
    return best


def main(argv: list[str] | None = None) -> int:
    """Refit select_calibration.py on the calibration dev set with the full data and the embedded default."""
    import argparse

    from sotai.rag.retriever import TagRetriever
    from sotai.settings import PROJECT_ROOT, Settings

    ap = argparse.ArgumentParser(prog="python -m sotai.rag.select", description=main.__doc__)
    ap.add_argument("--devset", type=Path, default=PROJECT_ROOT / "tests" / "rag" / "devset_ja.jsonl")
    ap.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data")
    ap.add_argument("--models-dir", type=Path, default=PROJECT_ROOT / "models" / "_test")
    ap.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    args = ap.parse_args(argv)
    items = [json.loads(line) for line in args.devset.read_text(encoding="utf-8").splitlines() if line.strip()]
    profiles = {}
    for data in (args.data, None):
        retriever = TagRetriever.from_settings(Settings(tag_data=data, vector_db_path=None, models_dir=args.models_dir))
        cal, m = fit([retriever.query(i["text"], 20) for i in items], items)
        profile = profile_of(retriever)
        profiles[profile] = {
            "weights": [round(w, 6) for w in cal.weights], "threshold": cal.threshold,
            "fitted_on": f"{args.devset.name} ({len(items)} texts), {'embedded default' if data is None else data.name}",
            "precision": round(m["precision"], 4), "recall": round(m["recall"], 4),
        }
        print(f"{profile}: threshold {cal.threshold}, precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
              f"{m['tags_per_text']:.1f} tags per text")
        for e in m["errors"]:
            print("  ", e)
    write_calibration({"features": list(FEATURES), "profiles": profiles}, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
