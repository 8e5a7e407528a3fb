"""The `dart` model in the real tritonserver: dynamic batching of different requests, per-request errors."""

from __future__ import annotations

import json
import queue

import numpy as np
import pytest

from sotai.dart import DartSampling, TagCompleter
from sotai.limits import SIZE_MULTIPLE

from .conftest import candidate

REQUESTS = [
    ([candidate("1girl")], 1024, 1024, "general", 1),
    ([candidate("1girl"), candidate("long_hair"), candidate("silver_hair"), candidate("smile"),
      candidate("cherry_blossoms"), candidate("night")], 832, 1216, "sensitive", 2),
    ([candidate("solo"), candidate("hatsune_miku", "character"), candidate("vocaloid", "copyright")], 1216, 832, "general", 3),
    ([candidate("outdoors"), candidate("tree")], 768, 1344, "general", 4),
]


def inputs(module, rows):
    def tensor(name, dtype, values):
        arr = np.array(values, dtype=dtype).reshape(len(rows), 1)
        t = module.InferInput(name, list(arr.shape), "BYTES" if dtype is np.object_ else {np.int32: "INT32", np.int64: "INT64"}[dtype])
        t.set_data_from_numpy(arr)
        return t

    return [
        tensor("CANDIDATES", np.object_, [json.dumps({"candidates": r[0]}).encode() for r in rows]),
        tensor("WIDTH", np.int32, [r[1] for r in rows]),
        tensor("HEIGHT", np.int32, [r[2] for r in rows]),
        tensor("RATING", np.object_, [r[3].encode() for r in rows]),
        tensor("SEED", np.int64, [r[4] for r in rows]),
    ]


@pytest.fixture(scope="module")
def local(tiny_repository):
    return TagCompleter(tiny_repository / "dart" / "1", ["CPUExecutionProvider"])


def expected(local, row):
    cands, width, height, rating, seed = row
    return local.complete(cands, width=width, height=height, rating=rating, sampling=DartSampling(seed=seed))


def test_concurrent_requests_of_different_lengths_each_get_their_own_answer(triton, local):
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(triton.grpc_url)
    done: queue.Queue = queue.Queue()
    for i, row in enumerate(REQUESTS):  # in flight together: the dynamic batcher may join them
        client.async_infer("dart", inputs(grpc, [row]), callback=lambda result, error, i=i: done.put((i, result, error)))
    answers = {}
    for _ in REQUESTS:
        i, result, error = done.get(timeout=120)
        assert error is None, error
        answers[i] = result
    for i, row in enumerate(REQUESTS):
        want = expected(local, row)
        assert answers[i].as_numpy("PROMPT")[0][0].decode() == want.prompt
        assert json.loads(answers[i].as_numpy("TAGS")[0][0]) == want.tags
    client.close()


def test_every_row_of_a_batched_request_is_answered(triton, local):
    import tritonclient.http as http

    client = http.InferenceServerClient(triton.http_url)
    result = client.infer("dart", inputs(http, REQUESTS[:3]))
    prompts = [p[0].decode() for p in result.as_numpy("PROMPT")]
    assert prompts == [expected(local, row).prompt for row in REQUESTS[:3]]


def test_a_bad_request_fails_alone_with_invalid_arg(triton):
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    client = grpc.InferenceServerClient(triton.grpc_url)
    bad = ([candidate("1girl")], 1001, 1024, "general", 1)  # in range, not a multiple of SIZE_MULTIPLE
    with pytest.raises(InferenceServerException) as err:
        client.infer("dart", inputs(grpc, [bad]))
    assert "width" in str(err.value) and f"multiple of {SIZE_MULTIPLE}" in str(err.value)
    assert client.infer("dart", inputs(grpc, [REQUESTS[0]])).as_numpy("PROMPT")[0][0]

