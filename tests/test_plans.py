"""client/plans.py without a server: the calls each request makes, what each model is sent, and the results.

A plan does no I/O, so these tests answer its calls with made-up outputs and check, for every route, the
models called in order, their inputs (the ensemble's steps must receive what the chain sends each model),
the progress events and the result.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sotai.client.catalog import Catalog, ModelInfo
from sotai.client.plans import RAG_DEFAULT_TOP_K, Call, candidates_from_tags, generate_plan, progress_from, tags_plan
from sotai.client.types import GenerateRequest, Progress
from sotai.contracts import PIPELINE_CONTRACTS, SOTAI, ModelContract
from sotai.errors import InvalidInput
from sotai.params import GENERATION_PARAMS, GenerationParams

SCENE = "銀髪の少女が夜の桜の下で微笑んでいる"
PARAMS = GenerationParams(steps=3, width=640, height=512, seed=11, rating="sensitive", quality_tags=False)
TAGS = [{"tag": "1girl", "score": 0.9, "category": "general", "reason": {"span": "少女", "signal": "jmdict"}}]


def config(contract: ModelContract, *, drop: tuple[str, ...] = ()) -> dict:
    """The model config Triton would report for a contract (as `get_model_config(as_json=True)` gives it)."""
    return {"config": {
        "name": contract.name,
        "max_batch_size": contract.max_batch_size,
        "input": [{"name": t.name, "data_type": f"TYPE_{t.dtype}", "optional": t.optional}
                  for t in contract.inputs if t.name not in drop],
        "output": [{"name": t.name, "data_type": f"TYPE_{t.dtype}"} for t in contract.outputs],
        "model_transaction_policy": {"decoupled": contract.decoupled},
    }}


def catalog(*names: str, drop: tuple[str, ...] = ()) -> Catalog:
    names = names or ("sotai", "rag", "dart", "diffusion", "diffusion_stream")
    return Catalog({n: ModelInfo.from_config(config(PIPELINE_CONTRACTS[n], drop=drop)) for n in names})


def s(value: str) -> np.ndarray:
    return np.array([[value.encode("utf-8")]], dtype=np.object_)


def answer(call: Call) -> dict[str, np.ndarray]:
    """Made-up outputs of each model, derived from what it was sent (so a wrong input shows in the result)."""
    v = call.values
    if call.model == "sotai":
        return ensemble(v)
    if call.model == "rag":
        return {"CANDIDATES": s(json.dumps({"candidates": TAGS, "top_k": v["TOP_K"]}))}
    if call.model == "dart":
        return {"TAGS": s(json.dumps(TAGS)), "PROMPT": s(f"1girl, {v['RATING']}, {v['WIDTH']}x{v['HEIGHT']}")}
    images = np.array([[f"png {v['PROMPT']} {i}".encode() for i in range(v["NUM_IMAGES"])] + [b""]], dtype=np.object_)
    return {"IMAGE": images, "SEED_USED": np.array([[v["SEED"]]], dtype=np.int64)}


def ensemble(values: dict[str, object]) -> dict[str, np.ndarray]:
    """The `sotai` ensemble as Triton runs it: each step gets its inputs through the contract's maps."""
    tensors: dict[str, object] = dict(values)
    for model, inputs, outputs in SOTAI.steps:
        sent = {name: tensors[t] for name, t in inputs.items() if t in tensors}
        out = answer(Call(model, {k: (v.reshape(-1)[0].decode() if isinstance(v, np.ndarray) else v)
                                  for k, v in sent.items()}))
        tensors.update({outputs[name]: arr for name, arr in out.items()})
    return {t.name: tensors[t.name] for t in SOTAI.outputs}


def run(plan) -> tuple[list, object]:
    """Drive a plan with `answer`: (the calls and progress events in order, the result)."""
    seen = []
    try:
        item = next(plan)
        while True:
            seen.append(item)
            item = next(plan) if isinstance(item, Progress) else plan.send(answer(item))
    except StopIteration as stop:
        return seen, stop.value


def calls(seen: list) -> list[Call]:
    return [item for item in seen if isinstance(item, Call)]


def test_a_text_request_is_one_ensemble_call_carrying_every_parameter():
    seen, result = run(generate_plan(GenerateRequest(SCENE, PARAMS, top_k=7), catalog(), progress=False,
                                     streaming=True))
    [call] = calls(seen)
    assert call.model == "sotai" and result.route == "sotai"
    assert call.values["TEXT"] == SCENE and call.values["TOP_K"] == 7
    assert {p.tensor for p in GENERATION_PARAMS} <= set(call.values)
    assert call.values["RATING"] == "sensitive" and call.values["QUALITY_TAGS"] is False
    assert call.defaults["TOP_K"] == RAG_DEFAULT_TOP_K, "a server without TOP_K is used when top_k is rag's default"
    assert result.images == [b"png 1girl, sensitive, 640x512 0"] and result.seed == 11


@pytest.mark.parametrize("request_", [
    GenerateRequest(SCENE, PARAMS, top_k=7),
    GenerateRequest(SCENE, GenerationParams(seed=3, num_images=2, scheduler="euler", cfg_scale=1.0,
                                            default_negative=False, negative_prompt="lowres")),
], ids=["top_k-rating", "batch-euler"])
def test_the_chain_sends_each_model_what_the_ensemble_steps_pass_it(request_):
    """The two routes of a text request, held equal: each stage of the `sotai` ensemble (through its
    input maps) receives exactly what the client's rag -> dart -> diffusion chain sends that model."""
    [ensemble_call], _ = run(generate_plan(request_, catalog(), progress=False, streaming=True))
    seen, chained = run(generate_plan(request_, catalog(), progress=False, streaming=True, cancellable=True))
    chain = {c.model: c.values for c in calls(seen)}
    assert list(chain) == ["rag", "dart", "diffusion"] and chained.route == "rag > dart > diffusion"
    for model, inputs, _ in SOTAI.steps:
        from_ensemble = {name: ensemble_call.values[tensor] for name, tensor in inputs.items()
                         if tensor in ensemble_call.values}
        sent = {name: value for name, value in chain[model].items() if name in from_ensemble}
        assert sent == from_ensemble, model
        # The rest of what the chain sends is what earlier steps produced (CANDIDATES, PROMPT).
        assert set(chain[model]) - set(from_ensemble) <= {"CANDIDATES", "PROMPT"}, model


def test_progress_streams_the_stages_in_order_and_uses_the_decoupled_painter_over_grpc():
    seen, result = run(generate_plan(GenerateRequest(SCENE, PARAMS), catalog(), progress=True, streaming=True))
    assert [c.model for c in calls(seen)] == ["rag", "dart", "diffusion_stream"]
    assert calls(seen)[-1].stream is True
    events = [(e.stage, e.step, e.total) for e in seen if isinstance(e, Progress)]
    assert events == [("rag", 0, 1), ("rag", 1, 1), ("dart", 1, 1), ("diffusion", 0, 3)]
    dart = next(e for e in seen if isinstance(e, Progress) and e.stage == "dart")
    assert dart.tags == TAGS == result.tags, "Dart's tags are reported before painting starts"
    assert result.route == "rag > dart > diffusion_stream"


def test_without_streaming_or_without_diffusion_stream_the_unary_painter_runs():
    for cat, streaming in ((catalog(), False), (catalog("sotai", "rag", "dart", "diffusion"), True)):
        seen, result = run(generate_plan(GenerateRequest(SCENE, PARAMS), cat, progress=True, streaming=streaming))
        assert calls(seen)[-1].model == "diffusion" and calls(seen)[-1].stream is False
        assert result.route == "rag > dart > diffusion"


def test_a_deadline_makes_the_request_go_stage_by_stage():
    seen, result = run(generate_plan(GenerateRequest(SCENE, PARAMS, timeout_s=30), catalog(), progress=False,
                                     streaming=True))
    assert [c.model for c in calls(seen)] == ["rag", "dart", "diffusion"]


def test_tags_bypass_rag_and_go_to_dart_as_user_candidates():
    seen, result = run(generate_plan(GenerateRequest(tags=("1girl", "silver_hair"), params=PARAMS), catalog(),
                                     progress=False, streaming=True))
    dart, paint = calls(seen)
    assert (dart.model, paint.model) == ("dart", "diffusion") and result.route == "dart > diffusion"
    sent = json.loads(dart.values["CANDIDATES"])["candidates"]
    assert [(c["tag"], c["reason"]["signal"]) for c in sent] == [("1girl", "user"), ("silver_hair", "user")]
    assert dart.values["CANDIDATES"] == candidates_from_tags(("1girl", "silver_hair"))
    assert paint.values["PROMPT"] == "1girl, sensitive, 640x512"


def test_a_prompt_goes_to_diffusion_alone_and_the_painter_must_take_the_rating():
    seen, result = run(generate_plan(GenerateRequest(prompt="1girl, night", params=PARAMS), catalog(),
                                     progress=False, streaming=True))
    [paint] = calls(seen)
    assert paint.model == "diffusion" and paint.values["PROMPT"] == "1girl, night"
    # No Dart ran: only the painter can honour a rating other than the default (a painter without RATING fails).
    assert paint.values["RATING"] == "sensitive" and paint.defaults["RATING"] == "general"
    assert [t["tag"] for t in result.tags] == ["1girl", "night"] and result.route == "diffusion"


def test_a_random_seed_is_drawn_once_for_dart_and_the_painter():
    seen, result = run(generate_plan(GenerateRequest(SCENE, GenerationParams(seed=-1)), catalog(), progress=True,
                                     streaming=False))
    dart, paint = calls(seen)[1:]
    assert dart.values["SEED"] == paint.values["SEED"] == result.seed >= 0


@pytest.mark.parametrize("request_, field, words", [
    (GenerateRequest(SCENE, GenerationParams(steps=0)), "steps", "must be in 1.."),
    (GenerateRequest(SCENE, top_k=0), "top_k", "must be in 1.."),
    (GenerateRequest(SCENE, tags=("1girl",)), "text", "exactly one of text, tags, prompt"),
    (GenerateRequest(), "text", "exactly one of text, tags, prompt"),
])
def test_bad_requests_fail_before_any_call(request_, field, words):
    with pytest.raises(InvalidInput) as caught:
        next(generate_plan(request_, catalog(), progress=False, streaming=True))
    assert caught.value.field == field and words in str(caught.value)


def test_a_server_without_an_optional_input_is_used_only_when_the_value_is_its_default():
    import tritonclient.grpc as tc

    old = catalog(drop=("TOP_K", "QUALITY_TAGS"))
    [call], _ = run(generate_plan(GenerateRequest(SCENE, GenerationParams(seed=1)), old, progress=False,
                                  streaming=True))
    names = [t.name() for t in old.get("sotai").encode(tc, call.values, call.defaults)]
    assert "TOP_K" not in names and "QUALITY_TAGS" not in names and "TEXT" in names
    [call], _ = run(generate_plan(GenerateRequest(SCENE, GenerationParams(seed=1), top_k=5), old, progress=False,
                                  streaming=True))
    with pytest.raises(InvalidInput, match="has no TOP_K input") as caught:
        old.get("sotai").encode(tc, call.values, call.defaults)
    assert caught.value.field == "top_k"


def test_tags_plan_stops_after_dart():
    seen, result = run(tags_plan(GenerateRequest(SCENE, PARAMS, top_k=4), catalog()))
    assert [c.model for c in calls(seen)] == ["rag", "dart"]
    assert calls(seen)[0].values == {"TEXT": SCENE, "TOP_K": 4}
    assert result.prompt == "1girl, sensitive, 640x512"


def test_progress_from_a_streamed_response():
    out = {"STEP": np.array([[2]], dtype=np.int32), "TOTAL_STEPS": np.array([[5]], dtype=np.int32),
           "PREVIEW": np.array([[b"\x89PNG"]], dtype=np.object_)}
    event = progress_from(out)
    assert (event.stage, event.step, event.total, event.preview) == ("diffusion", 2, 5, b"\x89PNG")
    assert progress_from({"IMAGE": np.array([[b"x"]], dtype=np.object_)}) is None
