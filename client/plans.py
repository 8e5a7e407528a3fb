"""The request flows, written once for the sync and the asyncio client.

A plan is a generator: it yields `Call`s (answered with the model's outputs) and `Progress` events,
and returns the result. It does no I/O, so `SotaiClient` and `AsyncSotaiClient` only differ in how
they perform a call.

Routes (all client-side; no BLS model orchestrates them):
- text, no progress wanted: the `sotai` ensemble, one round trip, unless the call must be cancellable
  or has a deadline: Triton 2.51's ensemble scheduler does not pass a cancellation on to the step under
  way (measured: a cancelled `sotai` call painted all its remaining steps), and gives every step the
  whole timeout; the chain below cancels, and gives each call what is left of the deadline.
- text with progress: rag, dart, then `diffusion_stream` (decoupled, one response per step) when the
  server has it and the protocol is gRPC, else `diffusion`. Dart's tags are reported before painting.
  (A streaming ensemble cannot replace this chain: Triton 2.51 refuses an ensemble whose outputs come
  from both a decoupled step and an earlier one.)
- tags: CANDIDATES built from the given tags go to dart (RAG is bypassed), then diffusion.
- prompt: diffusion alone, with the prompt exactly as given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Generator

import numpy as np

from sotai.errors import SotaiError
from sotai.diffusion.emphasis import item_tags, split_top_level
from sotai.params import GenerationParams, tensor_defaults, tensor_values

from .catalog import Catalog
from .types import GenerateRequest, GenerateResult, Progress, TagsResult

RAG_DEFAULT_TOP_K = 20  # rag's own default (its config parameter `top_k`), for a server without TOP_K inputs
PROGRESS_OUTPUTS = ("STEP", "TOTAL_STEPS", "PREVIEW")
USER_REASON = {"span": "", "signal": "user"}
PROMPT_REASON = {"span": "", "signal": "prompt"}


@dataclass(frozen=True)
class Call:
    model: str
    values: dict[str, object]
    defaults: dict[str, object] = field(default_factory=dict)  # values a model may lack (see ModelInfo.encode)
    stream: bool = False  # the model is decoupled: read every response
    request_id: str = ""  # Triton's request id (the painting call's: skip/interrupt name the job by it)


Plan = Generator["Call | Progress", "dict[str, np.ndarray] | None", "GenerateResult | TagsResult"]


def generation_values(p: GenerationParams, *, rated: bool = True) -> tuple[dict[str, object], dict[str, object]]:
    """Tensor values of the painting parameters (sotai.params), and the defaults a server's model may leave out.

    `rated`: Dart already took RATING (it picks the tags), so a painter without a RATING input
    still honours the request; a prompt that skips Dart needs the painter to take it.
    """
    defaults = tensor_defaults()
    if rated:
        defaults["RATING"] = p.rating
    return tensor_values(p), defaults


def rag_values(request: GenerateRequest) -> dict[str, object]:
    """The RAG stage's inputs: the same on the `sotai` ensemble and on the chain."""
    return {"TEXT": request.text, "TOP_K": request.top_k}


def candidates_from_tags(tags: tuple[str, ...]) -> str:
    """The RAG stage's CANDIDATES JSON for tags the caller chose (so Dart keeps them, in that order)."""
    return json.dumps({"candidates": [
        {"tag": t, "score": 1.0, "category": "general", "reason": {**USER_REASON, "span": t}} for t in tags
    ]}, ensure_ascii=False)


def prompt_tags(prompt: str) -> list[dict]:
    """The tags of a prompt given as is, for the reply: plain, with the weight A1111's syntax gives
    them (a group like `(silver hair, red eyes:1.2)` is two tags, not split at its comma)."""
    return [{"tag": t.tag, "score": 1.0, "category": "general", "reason": dict(PROMPT_REASON),
             **({"weight": t.weight} if t.weight != 1.0 else {})}
            for item in split_top_level(prompt) for t in item_tags(item)]


def _string(out: dict[str, np.ndarray], name: str) -> str:
    value = out[name].reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _images(out: dict[str, np.ndarray]) -> list[bytes]:
    # A batched diffusion pads rows that asked for fewer images with b"".
    return [bytes(b) for b in out["IMAGE"].reshape(-1) if len(b)]


def tags_plan(request: GenerateRequest, catalog: Catalog, progress: bool = False) -> Plan:
    """text -> rag -> dart, or tags -> dart."""
    request = request.checked()
    p = request.params
    if request.tags:
        candidates = candidates_from_tags(request.tags)
    else:
        if progress:
            yield Progress("rag", 0, 1)
        out = yield Call("rag", rag_values(request))
        candidates = _string(out, "CANDIDATES")
        if progress:
            yield Progress("rag", 1, 1)
    out = yield Call("dart", {"CANDIDATES": candidates, "WIDTH": p.width, "HEIGHT": p.height,
                              "RATING": p.rating, "SEED": p.seed})
    result = TagsResult(tags=json.loads(_string(out, "TAGS")), prompt=_string(out, "PROMPT"))
    if progress:
        yield Progress("dart", 1, 1, tags=result.tags, prompt=result.prompt)
    return result


def generate_plan(request: GenerateRequest, catalog: Catalog, *, progress: bool, streaming: bool,
                  cancellable: bool = False) -> Plan:
    """Any request -> GenerateResult. `streaming`: the transport can read decoupled models (gRPC).
    `cancellable`: call the stages one by one, so cancelling the caller stops the painting."""
    request = request.checked()
    values, defaults = generation_values(request.params, rated=not request.prompt)
    route: list[str] = []
    one_trip = not (cancellable or request.timeout_s is not None)

    if request.text and not progress and one_trip and not catalog.get("sotai").decoupled:
        out = yield Call("sotai", {**rag_values(request), **values}, {**defaults, "TOP_K": RAG_DEFAULT_TOP_K},
                         request_id=request.request_id)
        return GenerateResult(tags=json.loads(_string(out, "TAGS")), prompt=_string(out, "PROMPT"),
                              images=_images(out), seed=int(out["SEED_USED"].reshape(-1)[0]), route="sotai")

    if request.prompt:
        tags = TagsResult(tags=prompt_tags(request.prompt), prompt=request.prompt)
    else:
        route += ["dart"] if request.tags else ["rag", "dart"]
        tags = yield from tags_plan(request, catalog, progress)

    painter = "diffusion_stream" if streaming and progress and catalog.has("diffusion_stream") else "diffusion"
    route.append(painter)
    if progress:
        yield Progress("diffusion", 0, request.params.steps)
    out = yield Call(painter, {"PROMPT": tags.prompt, **values}, defaults, stream=catalog.get(painter).decoupled,
                     request_id=request.request_id)
    return GenerateResult(tags=tags.tags, prompt=tags.prompt, images=_images(out),
                          seed=int(out["SEED_USED"].reshape(-1)[0]), route=" > ".join(route))


def tags_request(text: str, params: GenerationParams | None, top_k: int, tags) -> GenerateRequest:
    """The request behind `client.tags(...)` (either client)."""
    return GenerateRequest(text=text, params=params or GenerationParams(), tags=tuple(tags), top_k=top_k)


def candidates_call(text: str, top_k: int) -> Call:
    """The RAG stage alone (`client.candidates`), checked as a text request is."""
    return Call("rag", rag_values(GenerateRequest(text=text, top_k=top_k).checked()))


def candidates_from(out: dict[str, np.ndarray]) -> list[dict]:
    return json.loads(_string(out, "CANDIDATES"))["candidates"]


def outputs_of(result, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A tritonclient InferResult (any protocol, sync or aio) -> {output name: array} of the outputs it has."""
    arrays = {name: result.as_numpy(name) for name in names}
    return {name: arr for name, arr in arrays.items() if arr is not None}


class StreamedOutputs:
    """The responses of a decoupled painter, merged: progress per response, then the images."""

    def __init__(self, model: str):
        self.model = model
        self.merged: dict[str, np.ndarray] = {}

    def add(self, result) -> Progress | None:
        """One streamed InferResult -> its Progress event (None for a response without STEP)."""
        out = {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}
        self.merged.update({k: v for k, v in out.items() if k not in PROGRESS_OUTPUTS})
        return progress_from(out)

    def final(self) -> dict[str, np.ndarray]:
        if "IMAGE" not in self.merged:
            raise SotaiError(f"{self.model}: the stream ended without an IMAGE response")
        return self.merged


def progress_from(out: dict[str, np.ndarray]) -> Progress | None:
    """A streamed diffusion response with STEP/TOTAL_STEPS (and PREVIEW) -> Progress."""
    if "STEP" not in out:
        return None
    preview = bytes(out["PREVIEW"].reshape(-1)[0]) if "PREVIEW" in out else b""
    total = int(out["TOTAL_STEPS"].reshape(-1)[0]) if "TOTAL_STEPS" in out else 0
    return Progress("diffusion", int(out["STEP"].reshape(-1)[0]), total, preview=preview)
