"""`sotai bench rag [--json]`: index build time and query latency of the RAG stage on this machine.

Builds the index from the configured tag data (SOTAI_TAG_DATA; else ../shared/data when present;
else the embedded default) into a fresh directory, then times `TagRetriever.retrieve` over the
dev-set sentences: once end to end (embedding included), once with the span embeddings
precomputed (everything but the embedding step), and the vector-store search alone.
The last line with --json is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from sotai.settings import PROJECT_ROOT, get_settings

DEVSET = PROJECT_ROOT / "tests" / "rag" / "devset_ja.jsonl"
# Used when the dev set is not there (an installed package without tests/).
FALLBACK_QUERIES = (
    "銀髪の少女が夜の桜の下で微笑んでいる",
    "帽子をかぶっていない二人の少女が雨の中で傘をさしている",
    "黒髪ロングの女の子がセーラー服を着て教室の窓際に座っている",
    "赤いリボンをつけたツインテールの女の子が笑顔で手を振っている",
    "夕焼けの屋上で制服姿の少年と少女が向かい合っている",
    "着物姿の女性が神社の鳥居の前に立っている",
    "眼鏡をかけたメイドが紅茶を運んでいる",
    "雪が降る冬の夜、マフラーを巻いた少女",
)


def bench_queries() -> list[str]:
    if DEVSET.is_file():
        return [json.loads(line)["text"] for line in DEVSET.read_text(encoding="utf-8").splitlines() if line.strip()]
    return list(FALLBACK_QUERIES)


def default_data_dir(settings) -> Path | None:
    if settings.tag_data:
        return Path(settings.tag_data)
    shared = PROJECT_ROOT.parent / "shared" / "data"
    return shared if (shared / "danbooru_tags.csv").is_file() else None


class _Precomputed:
    """An embedder that answers from vectors computed beforehand: retrieval minus the embedding step."""

    def __init__(self, inner, texts: list[str]):
        self.name, self.dim = inner.name, inner.dim
        self._cache = dict(zip(texts, inner.encode(texts)))

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def _time_queries(retriever, queries: list[str], repeats: int, top_k: int) -> list[float]:
    """Seconds per `retrieve` call, every query `repeats` times."""
    times = []
    for _ in range(repeats):
        for q in queries:
            t0 = time.perf_counter()
            retriever.retrieve(q, top_k)
            times.append(time.perf_counter() - t0)
    return times


def _span_texts(retriever, queries: list[str]) -> list[str]:
    """Every text the retriever embeds for these queries (captured by running them once)."""
    seen: list[str] = []
    inner = retriever.embedder

    class Recorder:
        name, dim = inner.name, inner.dim

        def encode(self, texts):
            seen.extend(texts)
            return inner.encode(texts)

    retriever.embedder = Recorder()
    try:
        for q in queries:
            retriever.retrieve(q, 20)
    finally:
        retriever.embedder = inner
    return list(dict.fromkeys(seen))


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples_s) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def run_bench(data_dir: Path | None, index_dir: Path | None = None, repeats: int = 3, top_k: int = 20) -> dict:
    from sotai.rag.analysis import analyze
    from sotai.rag.index import build_index
    from sotai.rag.retriever import TagRetriever

    settings = get_settings()
    tmp = None
    if index_dir is None or not (index_dir / "manifest.json").is_file():
        if index_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="sotai-bench-rag-")
            index_dir = Path(tmp.name) / "index"
        started = time.perf_counter()
        build_index(data_dir, index_dir, embedding=settings.embedding, settings=settings)
        build_s, reused = time.perf_counter() - started, False
    else:
        build_s, reused = json.loads((index_dir / "manifest.json").read_text())["build_s"], True
    try:
        retriever = TagRetriever.load(index_dir, settings=settings)
        queries = bench_queries()
        for q in queries[:3]:  # warm-up: tokenizer, BLAS, FAISS pages
            retriever.retrieve(q, top_k)

        # 1. end to end, embedding included
        full = _time_queries(retriever, queries, repeats, top_k)

        # 2. the same with the span embeddings precomputed
        inner = retriever.embedder
        retriever.embedder = _Precomputed(inner, _span_texts(retriever, queries))
        no_embed = _time_queries(retriever, queries, repeats, top_k)
        retriever.embedder = inner

        # 3. the vector store alone, one batch of span vectors per query
        store_times = []
        for q in queries:
            vectors = inner.encode([s.text for s in analyze(q).spans] or [q])
            t0 = time.perf_counter()
            retriever.index.store.search(vectors, 12)
            store_times.append(time.perf_counter() - t0)

        p50, p95 = _percentiles(full)
        s50, s95 = _percentiles(no_embed)
        v50, _ = _percentiles(store_times)
        return {
            "build_s": round(float(build_s), 2), "build_reused": reused,
            "query_p50_ms": round(p50, 2), "query_p95_ms": round(p95, 2),
            "search_only_p50_ms": round(s50, 2), "search_only_p95_ms": round(s95, 2),
            "vector_store_p50_ms": round(v50, 2),
            "n_tags": int(retriever.index.manifest["n_tags"]), "n_embedded": int(retriever.index.manifest["n_embedded"]),
            "n_queries": len(queries) * repeats, "top_k": top_k, "embedding": retriever.embedder.name,
            "store": getattr(retriever.index.store, "description", retriever.index.manifest["store"]["index"]),
            "data": retriever.index.manifest["data_source"], "cpus": os.cpu_count(),
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def cmd_bench_rag(args) -> int:
    settings = get_settings()
    data_dir = args.data if args.data is not None else default_data_dir(settings)
    result = run_bench(data_dir, args.index, repeats=args.repeats)
    if not args.json:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    else:
        print(f"RAG bench over {result['n_tags']} tags ({result['n_embedded']} embedded), "
              f"{result['n_queries']} queries: p50 {result['query_p50_ms']} ms, p95 {result['query_p95_ms']} ms, "
              f"without embedding p50 {result['search_only_p50_ms']} ms; build {result['build_s']} s")
        print(json.dumps(result, ensure_ascii=False))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("rag")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.add_argument("--data", type=Path, default=None,
                   help="tag data directory (default: SOTAI_TAG_DATA, else ../shared/data, else embedded)")
    p.add_argument("--index", type=Path, default=None,
                   help="reuse (or build into) this index directory instead of a fresh temporary one")
    p.add_argument("--repeats", type=int, default=3, help="passes over the queries")
    p.set_defaults(func=cmd_bench_rag)
