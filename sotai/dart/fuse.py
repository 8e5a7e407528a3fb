"""Rewrite of the exported graph's attention into onnxruntime's fused contrib ops.

optimum's trace of Mistral attention is ~92 small nodes per layer (shape arithmetic, rotate_half,
repeat_kv, mask building); at batch 1 a decode step is so short that running those nodes costs
about as much as the attention maths. Each layer's attention becomes one `GroupQueryAttention`
node (rotary included), which reads the single KV head without repeating it.

The graph's interface stays the same (input_ids, attention_mask, past_key_values.* in; logits,
present.* out), and so does the cache layout: left-padded rows, one shared length T. The kernel
is told every row holds all T positions (`seqlens_k` = T - 1), so its rotary positions are
past_length + s for every row, exactly the `arange` the exported graph used; padding is masked
by an additive `attention_bias` built from `attention_mask` (a pad row's shifted positions do
not matter: rotary attention depends only on position differences).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sotai.errors import MissingArtifact

MS_DOMAIN = "com.microsoft"
ATTN = "/model/layers.{i}/self_attn/"
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


class FusionError(ValueError):
    """The exported graph does not look like optimum's Mistral trace (names or ops changed)."""


def fuse_attention(model, config) -> None:
    """Replace every layer's attention subgraph of `model` (onnx.ModelProto, in place) by fused ops.

    `config` is the model's transformers config (head counts, rope_theta, max positions).
    """
    from onnx import TensorProto, helper, numpy_helper

    if getattr(config, "rope_scaling", None):
        raise FusionError("rope_scaling is not supported by the fused rotary cache")
    graph = model.graph
    nodes = list(graph.node)  # one wrapper per node, alive throughout: ids below stay valid
    inputs = {i.name for i in graph.input}
    for name in ("input_ids", "attention_mask"):
        if name not in inputs:
            raise FusionError(f"graph input {name!r} missing")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    cos, sin = _rotary_cache(head_dim, config.max_position_embeddings, config.rope_theta)

    shared = [
        numpy_helper.from_array(cos, "fused/cos_cache"),
        numpy_helper.from_array(sin, "fused/sin_cache"),
        numpy_helper.from_array(np.array([0], np.int64), "fused/zero"),
        numpy_helper.from_array(np.array([1], np.int64), "fused/one"),
        numpy_helper.from_array(np.array([2], np.int64), "fused/two"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "fused/axes_1_2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "fused/one_f"),
        numpy_helper.from_array(np.array(np.finfo(np.float32).min, np.float32), "fused/neg"),
    ]
    graph.initializer.extend(shared)
    # Computed once per run, shared by every layer: the padding bias [B, 1, S, T] (0 where
    # attention_mask is 1, float32 min where it is 0; the causal part is the kernel's own),
    # seqlens_k [B] = T - 1 and total_sequence_length = T (int32, as the kernel wants).
    mk = helper.make_node
    front = [
        mk("Shape", ["input_ids"], ["fused/ids_shape"]),
        mk("Shape", ["attention_mask"], ["fused/mask_shape"]),
        mk("Slice", ["fused/ids_shape", "fused/one", "fused/two"], ["fused/S"]),
        mk("Slice", ["fused/ids_shape", "fused/zero", "fused/one"], ["fused/B"]),
        mk("Slice", ["fused/mask_shape", "fused/one", "fused/two"], ["fused/T"]),
        mk("Cast", ["attention_mask"], ["fused/mask_f"], to=TensorProto.FLOAT),
        mk("Sub", ["fused/one_f", "fused/mask_f"], ["fused/pad_f"]),
        mk("Mul", ["fused/pad_f", "fused/neg"], ["fused/pad_bias"]),
        mk("Unsqueeze", ["fused/pad_bias", "fused/axes_1_2"], ["fused/pad_bias_4d"]),
        mk("Concat", ["fused/one", "fused/one", "fused/S", "fused/one"], ["fused/bias_shape"], axis=0),
        mk("Expand", ["fused/pad_bias_4d", "fused/bias_shape"], ["fused/attention_bias"]),
        mk("Sub", ["fused/T", "fused/one"], ["fused/T_minus_1"]),
        mk("Expand", ["fused/T_minus_1", "fused/B"], ["fused/seqlens_k_64"]),
        mk("Cast", ["fused/seqlens_k_64"], ["fused/seqlens_k"], to=TensorProto.INT32),
        mk("Squeeze", ["fused/T", "fused/zero"], ["fused/T_scalar"]),
        mk("Cast", ["fused/T_scalar"], ["fused/total_len"], to=TensorProto.INT32),
    ]
    fused: dict[int, list] = {}  # id(o_proj node) -> the layer's fused nodes, placed just before it
    removed: set[int] = set()
    for i in range(config.num_hidden_layers):
        prefix = ATTN.format(i=i)
        layer = [n for n in nodes if n.name.startswith(prefix)]
        proj = {p: _projection(layer, prefix, p) for p in PROJECTIONS}
        q, k, v = (proj[p].output[0] for p in ("q_proj", "k_proj", "v_proj"))
        attn_out = proj["o_proj"].input[0]
        produced = {o for n in layer for o in n.output}
        for name in (f"present.{i}.key", f"present.{i}.value", attn_out):
            if name not in produced:
                raise FusionError(f"{name!r} is not computed under {prefix}")
        removed.update(id(n) for n in layer if n.name not in {p.name for p in proj.values()})
        fused[id(proj["o_proj"])] = [mk(
            "GroupQueryAttention",
            [q, k, v, f"past_key_values.{i}.key", f"past_key_values.{i}.value", "fused/seqlens_k", "fused/total_len",
             "fused/cos_cache", "fused/sin_cache", "", "fused/attention_bias"],
            [attn_out, f"present.{i}.key", f"present.{i}.value"],
            name=f"{prefix}GroupQueryAttention", domain=MS_DOMAIN, num_heads=heads, kv_num_heads=kv_heads,
            do_rotary=1, rotary_interleaved=0,
        )]
    # the exported order is topological; the fused nodes need only q/k/v (computed before o_proj)
    ordered = list(front)
    for n in nodes:
        if id(n) not in removed:
            ordered += fused.get(id(n), []) + [n]
    del graph.node[:]
    graph.node.extend(ordered)
    _drop_dead(graph)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))


def _projection(layer, prefix: str, name: str):
    hits = [n for n in layer if n.name.startswith(f"{prefix}{name}/") and n.op_type in ("MatMul", "MatMulNBits")]
    if len(hits) != 1:
        raise FusionError(f"expected one MatMul under {prefix}{name}/, found {len(hits)}")
    return hits[0]


def _rotary_cache(head_dim: int, positions: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [positions, head_dim / 2], as transformers' default rotary embedding computes them."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
    freqs = np.outer(np.arange(positions, dtype=np.float32), inv_freq.astype(np.float32))
    return np.cos(freqs).astype(np.float32), np.sin(freqs).astype(np.float32)


def _drop_dead(graph) -> None:
    """Remove nodes and initializers no graph output depends on (the old mask and rotary maths)."""
    needed = {o.name for o in graph.output}
    live = []
    for n in reversed(list(graph.node)):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(x for x in n.input if x)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def fuse_dart_onnx(model_path: Path, out_path: Path) -> Path:
    """File form of `fuse_attention`: reads `config.json` beside `model_path`, writes `out_path`."""
    import onnx
    from transformers import AutoConfig

    model_path, out_path = Path(model_path), Path(out_path)
    if not model_path.is_file():
        raise MissingArtifact("Dart ONNX graph", model_path, "make export")
    config = AutoConfig.from_pretrained(model_path.parent)
    model = onnx.load(str(model_path))
    fuse_attention(model, config)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return out_path
