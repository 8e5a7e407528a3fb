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
