"""The `rag` model in the real tritonserver: every row of a batch answered, per-request errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sotai.rag import TagRetriever

TEXTS = ["銀髪の少女が夜の桜の下で微笑んでいる", "帽子をかぶっていない二人の少女", "雨の夜の街"]


def request(grpc, texts, top_ks=None):
    arr = np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1)
    inputs = [grpc.InferInput("TEXT", list(arr.shape), "BYTES")]
    inputs[0].set_data_from_numpy(arr)
    if top_ks is not None:
        k = np.array(top_ks, dtype=np.int32).reshape(-1, 1)
        inputs.append(grpc.InferInput("TOP_K", list(k.shape), "INT32"))
        inputs[1].set_data_from_numpy(k)
    return inputs


@pytest.fixture(scope="module")
def grpc_client(triton):
    import tritonclient.grpc as grpc

    return grpc, grpc.InferenceServerClient(triton.grpc_url)


@pytest.fixture(scope="module")
def local(tiny_repository):
    return TagRetriever.load(tiny_repository / "rag" / "1" / "index")


def test_a_batch_gets_one_answer_per_row_equal_to_the_library(grpc_client, local):
    grpc, client = grpc_client
    result = client.infer("rag", request(grpc, TEXTS, [5, 10, 3]))
    rows = result.as_numpy("CANDIDATES").reshape(-1)
    assert len(rows) == 3
    for text, k, raw in zip(TEXTS, [5, 10, 3], rows):
        got = json.loads(raw)["candidates"]
        assert 0 < len(got) <= k
        assert got == [c.to_dict() for c in local.retrieve(text, k)]


def test_top_k_defaults_to_the_config_parameter(grpc_client):
    grpc, client = grpc_client
    result = client.infer("rag", request(grpc, [TEXTS[0]]))
    assert len(json.loads(result.as_numpy("CANDIDATES").reshape(-1)[0])["candidates"]) == 20


@pytest.mark.parametrize("texts, top_ks, field", [([""], [5], "text"), (["少女"], [0], "top_k"),
                                                   (["少女", "少女"], [5, 500], "top_k")])
def test_bad_input_is_an_invalid_argument_naming_the_field(grpc_client, texts, top_ks, field):
    grpc, client = grpc_client
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as err:
        client.infer("rag", request(grpc, texts, top_ks))
    assert f"{field}=" in err.value.message()
    assert "INVALID_ARG" in str(err.value.status()) or "InvalidArgument" in str(err.value)


def test_the_rag_model_carries_exactly_the_local_selection_and_dart_completes_it(grpc_client, local):
    """The rag -> dart path in Triton uses the selection `sotai tags --stage select --local` prints."""
    from sotai.rag.select import select_text

    grpc, client = grpc_client
    texts = TEXTS + ["オッドアイの少年が不敵に笑っている"]
    rows = client.infer("rag", request(grpc, texts, [20] * len(texts))).as_numpy("CANDIDATES").reshape(-1)
    for text, raw in zip(texts, rows):
        payload = json.loads(raw)
        mine = select_text(local, text, 20)
        assert payload["selected"] == mine.tags and payload["negated"] == mine.negated
        assert payload["candidates"] == [c.to_dict() for c in local.retrieve(text, 20)]
    # Dart keeps the selected tags, adds its own, and never a negated one
    arr = np.array([rows[1]], dtype=np.object_).reshape(1, 1)
    ins = [grpc.InferInput("CANDIDATES", [1, 1], "BYTES")]
    ins[0].set_data_from_numpy(arr)
    for name, dtype, kind, value in (("WIDTH", np.int32, "INT32", 1024), ("HEIGHT", np.int32, "INT32", 1024),
                                     ("RATING", np.object_, "BYTES", b"general"), ("SEED", np.int64, "INT64", 5)):
        t = grpc.InferInput(name, [1, 1], kind)
        t.set_data_from_numpy(np.array([[value]], dtype=dtype))
        ins.append(t)
    tags = json.loads(client.infer("dart", ins).as_numpy("TAGS").reshape(-1)[0])
    given = [t["tag"] for t in tags if t["reason"].get("signal") != "dart"]
    selected = json.loads(rows[1])["selected"]
    assert sorted(given) == sorted(t["tag"].replace("_", " ") for t in selected)
    assert 1 <= len(tags) - len(given) <= 15  # the `long` bucket
    assert not set(json.loads(rows[1])["negated"]) & {t["tag"].replace(" ", "_") for t in tags}


def test_stage_select_through_the_server_is_the_local_selection(triton, local):
    from sotai.client import SotaiClient
    from sotai.rag.commands import selected_from_server
    from sotai.rag.select import select_text

    with SotaiClient(triton.grpc_url) as client:
        for text in TEXTS:
            assert selected_from_server(client, text, 20) == select_text(local, text, 20).tags
