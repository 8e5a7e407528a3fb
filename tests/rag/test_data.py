"""Loaders of every supported tag source, and the pieces around the retriever (store, embedders, download)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest

from sotai.rag import data as tagdata
from sotai.rag.store import FaissStore, VectorStore


def test_tag_csv_reads_categories_counts_and_quoted_aliases(tiny_data):
    table = tagdata.load_tag_csv(tiny_data / "danbooru_tags.csv")
    row = table.set_index("tag").loc["highres"]
    assert row.category == "meta" and row.post_count == 5256195
    assert row.aliases == ["high_res", "high_resolution", "hires"]
    assert table.set_index("tag").loc["night"].aliases == []


def test_tag_csv_rejects_a_bad_row_with_its_line(tmp_path):
    bad = tmp_path / "danbooru_tags.csv"
    bad.write_text('1girl,0,10,""\nsolo,9,x,\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"danbooru_tags.csv:2"):
        tagdata.load_tag_csv(bad)


def test_japanese_names_split_into_hand_and_machine(tiny_data):
    table = tagdata.load_tag_dir(tiny_data).set_index("tag")
    assert list(table.loc["hat"].japanese) == ["帽子"]
    assert list(table.loc["hat"].japanese_mt) == []  # the machine file repeats the hand names: not twice
    assert list(table.loc["cherry_blossoms"].japanese_mt) == ["桜"]


def test_wiki_parquet_adds_japanese_other_names_and_descriptions(tiny_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "wiki").mkdir()
    pd.DataFrame({
        "title": ["umbrella", "no_such_tag"],
        "other_names": [["傘", "かさ", "parapluie"], []],
        "body": ["h4. Umbrella\n\nA [[rain]] shield, often [b]held[/b] by [[1girl|a girl]].\n\nh4. See also", ""],
    }).to_parquet(data / "wiki" / "train-00000.parquet")
    table = tagdata.load_tag_dir(data).set_index("tag")
    assert list(table.loc["umbrella"].japanese) == ["傘", "かさ"]  # the non-Japanese name is not a Japanese name
    assert table.loc["umbrella"].description == "A rain shield, often held by a girl."
    assert "no_such_tag" not in table.index  # the wiki describes tags; it does not add them
    assert any(p.suffix == ".parquet" for p in tagdata.source_files(data))


def test_missing_tag_list_names_the_download_command(tmp_path):
    from sotai.errors import MissingArtifact

    with pytest.raises(MissingArtifact, match="sotai data download"):
        tagdata.load_tag_dir(tmp_path)


def test_embedded_default_is_text2tags_list_without_importing_it():
    table = tagdata.load_embedded_default()
    assert len(table) > 10_000 and table["tag"].iloc[0] == "1girl"
    by_tag = table.set_index("tag")
    assert by_tag.loc["traditional_media"].category == "meta"  # about the medium: never returned
    assert by_tag.loc["alternate_costume"].category == "general"
    assert table["post_count"].is_monotonic_decreasing


def test_checksum_changes_with_the_data(tiny_data, tmp_path):
    import shutil

    copy = tmp_path / "d"
    shutil.copytree(tiny_data, copy)
    before = tagdata.data_checksum(copy)
    assert before == tagdata.data_checksum(tiny_data)
    (copy / "danbooru_ja_hand.csv").write_text("hat,帽子\n", encoding="utf-8")
    assert tagdata.data_checksum(copy) != before


def test_faiss_store_is_a_vector_store_that_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = FaissStore.create(8, 50)
    store.add(vectors, np.arange(100, 150))
    assert isinstance(store, VectorStore) and len(store) == 50
    scores, ids = store.search(vectors[[3, 7]], 2)
    assert ids[:, 0].tolist() == [103, 107] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    store.save(tmp_path)
    again = FaissStore.load(tmp_path)
    assert again.search(vectors[[3]], 1)[1].tolist() == [[103]]


def test_large_stores_use_hnsw_with_exact_enough_neighbours():
    import faiss

    rng = np.random.default_rng(1)
    n = FaissStore.HNSW_FROM
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = FaissStore.create(16, n)
    assert isinstance(store.index, faiss.IndexHNSWFlat)
    store.add(vectors, np.arange(n))
    _, ids = store.search(vectors[:20], 1)
    assert ids[:, 0].tolist() == list(range(20))


def test_openai_compatible_endpoint_embeds_through_the_openai_client():
    pytest.importorskip("openai")
    from sotai.rag.embedding import OpenAIEmbedder

    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen["url"], seen["model"] = str(request.url), body["model"]
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
                for i, t in enumerate(body["input"])]
        return httpx.Response(200, json={"object": "list", "data": data, "model": body["model"],
                                         "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    emb = OpenAIEmbedder("my-embedder", base_url="http://embeddings.local/v1",
                         http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    out = emb.encode(["a", "abc"])
    assert seen == {"url": "http://embeddings.local/v1/embeddings", "model": "my-embedder"}
    assert out.shape == (2, 3) and np.allclose(np.linalg.norm(out, axis=1), 1.0)
    assert emb.name == "openai:my-embedder" and emb.dim == 3


def test_unknown_embedding_spec_names_what_to_set(tmp_path):
    from sotai.errors import MissingArtifact
    from sotai.rag.embedding import make_embedder

    with pytest.raises(MissingArtifact, match="SOTAI_EMBEDDING|sentence-transformers"):
        make_embedder(str(tmp_path / "no-model-here"))


def test_download_resumes_a_partial_file(tmp_path):
    from sotai.rag.download import RemoteFile, fetch

    payload = b"1girl,0,10,\n" * 100
    (tmp_path / "danbooru_tags.csv.part").write_bytes(payload[:300])

    ranges = []

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("range"))
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-")) if "range" in request.headers else 0
        return httpx.Response(206 if start else 200, content=payload[start:],
                              headers={"content-range": f"bytes {start}-{len(payload) - 1}/{len(payload)}"})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    path = fetch(RemoteFile("danbooru_tags.csv", "https://example.invalid/danbooru.csv"), tmp_path, client)
    assert path.read_bytes() == payload and not (tmp_path / "danbooru_tags.csv.part").exists()
    # Resumed: one request for the missing bytes only, not a fresh fetch from 0.
    assert ranges == ["bytes=300-"]


def test_download_starts_over_when_the_server_ignores_range(tmp_path):
    from sotai.rag.download import RemoteFile, fetch

    payload = b"1girl,0,10,\n" * 100
    (tmp_path / "danbooru_tags.csv.part").write_bytes(b"stale bytes")
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=payload)))
    path = fetch(RemoteFile("danbooru_tags.csv", "https://example.invalid/danbooru.csv"), tmp_path, client)
    assert path.read_bytes() == payload


def test_download_without_network_says_what_to_do(tmp_path):
    from sotai.rag.download import DownloadError, RemoteFile, fetch

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Name or service not known", request=request)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(DownloadError, match="no network.*SOTAI_TAG_DATA.*sotai data download"):
        fetch(RemoteFile("danbooru_tags.csv", "https://example.invalid/x.csv"), tmp_path, client)


def test_wiki_download_offline_says_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from sotai.rag.download import DownloadError, download_wiki

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match="no network"):
        download_wiki(tmp_path, with_tag_files=False)
