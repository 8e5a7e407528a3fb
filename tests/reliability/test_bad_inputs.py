"""Every case of the bad-input corpus (bad_inputs.py) gets its own clear error over gRPC from the
`sotai` ensemble (INVALID_ARG) and over HTTP from the gateway (422), naming the field and the limit
in sotai.limits' words; afterwards both still serve a good request."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from sotai.contracts import SOTAI

from .bad_inputs import GOOD_PARAMS, GRPC_CASES, HTTP_CASES, NOT_SET, Case


def test_the_corpus_is_large_and_covers_both_transports():
    assert len({c.id for c in GRPC_CASES + HTTP_CASES}) >= 30
    assert len(GRPC_CASES) >= 30 and len(HTTP_CASES) >= 30


# -- gRPC -> the `sotai` ensemble ---------------------------------------------------------------


def grpc_inputs(case: Case) -> list:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    tensors: dict[str, np.ndarray | None] = {}
    params = {**GOOD_PARAMS, **(case.params or {})}
    overridden = set(case.tensors or {})
    for name, value in params.items():
        tensor = SOTAI.input(name.upper())
        if tensor.name in overridden:
            continue  # e.g. a seed that has no int64 form: the case sends its own tensor
        cell = value.encode("utf-8") if tensor.dtype == "STRING" else value
        tensors[tensor.name] = np.array([[cell]] * case.batch, dtype=tensor.numpy_dtype).reshape(case.batch, 1)
    tensors.update(case.tensors or {})
    inputs = []
    for name, array in tensors.items():
        if array is None:
            continue  # the case leaves this input out
        item = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        inputs.append(item)
    return inputs


def grpc_error(grpc_client, case: Case):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as error:
        grpc_client.infer("sotai", grpc_inputs(case), client_timeout=120)
    return error.value


def assert_words(message: str, case: Case, transport: str) -> None:
    field, rule = case.expected(transport)
    if case.triton_words and transport == "grpc":
        assert field in message and rule in message, message
        return
    # `field=<value> is invalid: <rule>`: the field named, then the limit
    pattern = re.escape(field) + r"=.* is invalid: .*" + re.escape(rule)
    assert re.search(pattern, message, re.S), f"{message!r} does not match {pattern!r}"


@pytest.mark.parametrize("case", GRPC_CASES, ids=[c.id for c in GRPC_CASES])
def test_grpc_bad_input_is_invalid_arg_naming_field_and_limit(grpc_client, case):
    error = grpc_error(grpc_client, case)
    assert error.status() == "StatusCode.INVALID_ARGUMENT", error
    assert_words(error.message(), case, "grpc")


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.size


def test_the_ensemble_still_serves_after_the_corpus(grpc_client):
    result = grpc_client.infer("sotai", grpc_inputs(Case("good", "", "", params={})), client_timeout=120)
    assert png_size(result.as_numpy("IMAGE")[0][0]) == (512, 512)
    assert json.loads(result.as_numpy("TAGS")[0][0])


# -- HTTP -> the gateway ------------------------------------------------------------------------


def post(http, case: Case):
    body = {**GOOD_PARAMS, **case.params} if case.body is NOT_SET else case.body
    if not isinstance(body, bytes):
        # NaN and Infinity as JavaScript and Python write them: the gateway's JSON parser reads them
        body = json.dumps(body, ensure_ascii=False, allow_nan=True).encode("utf-8")
    return http.post(case.path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
def test_http_bad_input_is_422_naming_field_and_limit(http, case):
    response = post(http, case)
    assert response.status_code == 422, response.text
    body = response.json()
    field, rule = case.expected("http")
    assert body["field"] == field and rule in body["rule"], body
    assert_words(body["detail"], case, "http")


SAME = [c for c in GRPC_CASES if c.same_words]


@pytest.mark.parametrize("case", SAME, ids=[c.id for c in SAME])
def test_gateway_and_triton_use_the_same_words(grpc_client, http, case):
    triton_message = grpc_error(grpc_client, case).message()
    detail = post(http, case).json()["detail"]
    assert triton_message.endswith(detail), (triton_message, detail)


def test_the_gateway_still_serves_after_the_corpus(http):
    response = http.post("/v1/images", json=GOOD_PARAMS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["seed"] == GOOD_PARAMS["seed"] and body["tags"]
    assert png_size(base64.b64decode(body["images"][0])) == (512, 512)


# -- each Triton model validates on its own (callers other than the ensemble exist: BLS, clients) -


def _infer_error(grpc_client, model: str, tensors: dict[str, np.ndarray]):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    inputs = []
    for name, array in tensors.items():
        item = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)
        inputs.append(item)
    with pytest.raises(InferenceServerException) as error:
        grpc_client.infer(model, inputs, client_timeout=60)
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT", error.value
    return error.value.message()


def _s(text: str) -> np.ndarray:
    return np.array([[text.encode()]], dtype=np.object_)


def _i32(v: int) -> np.ndarray:
    return np.array([[v]], np.int32)


def _dart(candidates: str, width: int = 512) -> dict:
    return {"CANDIDATES": _s(candidates), "WIDTH": _i32(width), "HEIGHT": _i32(512), "RATING": _s("general"),
            "SEED": np.array([[1]], np.int64)}


def _diffusion(**over) -> dict:
    t = {"PROMPT": _s("1girl"), "NEGATIVE_PROMPT": _s(""), "STEPS": _i32(1), "CFG_SCALE": np.array([[7.0]], np.float32),
         "WIDTH": _i32(512), "HEIGHT": _i32(512), "SEED": np.array([[1]], np.int64), "NUM_IMAGES": _i32(1),
         "SCHEDULER": _s("euler")}
    return {**t, **over}


MODEL_CASES = [
    ("rag", {"TEXT": _s("夜の桜"), "TOP_K": _i32(0)}, "top_k=0 is invalid: must be in 1..200"),
    ("rag", {"TEXT": _s(" ")}, "text=' ' is invalid: must not be empty or only whitespace"),
    ("dart", _dart("{not json"), "CANDIDATES="),
    ("dart", _dart(json.dumps({"candidates": [{"tag": f"t{i}"} for i in range(201)]})),
     "candidates='<201 candidates>' is invalid: must hold at most 200 candidates"),
    ("dart", _dart('{"candidates": [{"tag": "1girl", "score": "high"}]}'), "candidates[0].score='high' is invalid"),
    ("dart", _dart('{"candidates": []}', width=1000), "width=1000 is invalid: must be a multiple of 32"),
    ("diffusion", _diffusion(PROMPT=_s("")), "prompt='' is invalid: must not be empty or only whitespace"),
    ("diffusion", _diffusion(PROMPT=_s("1girl, " * 2000)), "must be at most 12000 characters"),
    ("diffusion", _diffusion(HEIGHT=_i32(1000)), "height=1000 is invalid: must be a multiple of 32"),
    ("diffusion", _diffusion(SCHEDULER=_s("ddim")), "scheduler='ddim' is invalid"),
    ("unet", {"sample": np.zeros((1, 4, 64, 64), np.float32)}, "missing required input(s)"),
]


@pytest.mark.parametrize("model, tensors, words", MODEL_CASES,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(MODEL_CASES)])
def test_each_model_refuses_bad_input_with_invalid_arg(grpc_client, model, tensors, words):
    assert words in _infer_error(grpc_client, model, tensors)
