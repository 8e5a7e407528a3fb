"""The attention rewrite leaves one GroupQueryAttention per layer and the same graph interface
(numbers: test_parity runs every parity check on the fused graph too)."""

import json

import onnx
import pytest

from sotai.dart.fuse import FusionError, fuse_attention


def _io(model) -> tuple[list[str], list[str]]:
    return [i.name for i in model.graph.input], [o.name for o in model.graph.output]


def test_each_layer_becomes_one_group_query_attention_with_the_same_inputs_and_outputs(tiny_onnx_dir, tiny_fused_dir):
    exported = onnx.load(str(tiny_onnx_dir / "model.onnx"))
    fused = onnx.load(str(tiny_fused_dir / "model.onnx"))
    layers = json.loads((tiny_onnx_dir / "config.json").read_text())["num_hidden_layers"]
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count("GroupQueryAttention") == layers
    assert not any(n.name.startswith("/model/layers.") and "/self_attn/" in n.name and n.op_type not in ("MatMul", "GroupQueryAttention")
                   for n in fused.graph.node)
    assert len(fused.graph.node) < len(exported.graph.node)
    assert _io(fused) == _io(exported)


def test_a_graph_that_is_not_the_mistral_trace_is_refused(tiny_onnx_dir):
    from transformers import AutoConfig

    model = onnx.load(str(tiny_onnx_dir / "model.onnx"))
    for n in model.graph.node:
        n.name = n.name.replace("q_proj", "query")
    with pytest.raises(FusionError, match="q_proj"):
        fuse_attention(model, AutoConfig.from_pretrained(tiny_onnx_dir))
