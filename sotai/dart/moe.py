"""Mixtral's sparse-MoE block in a form that exports to a small, correct ONNX graph.

The stock forward loops over the experts *hit by the input*: traced with the dummy input it
would bake that set into the graph, and it emits ~37 nodes per expert. This forward loops
over every expert with few nodes per expert: the rows routed to it (NonZero + Gather), one
fused gate/up MatMul (w1 and w3 side by side), SiLU-gating, w2, and a scatter-add back.
Only the routed rows are computed, so decoding reads the weights of the 2 chosen experts.

(onnxruntime's fused `MoE`/`QMoE` contrib ops were measured too: on CPU they were 3-5x slower
per layer than MatMulNBits over the routed rows, see `sotai bench dart`'s notes in the report.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gate_up_weight(expert) -> torch.Tensor:
    """[2*inter, hidden]: w1 (gate) rows, then w3 (up) rows; folded into one initializer on export."""
    return torch.cat([expert.w1.weight, expert.w3.weight], dim=0)


class AddRows(torch.autograd.Function):
    """out + y scattered to `rows` ([n, 1], each row once), exported as one ScatterND(add).

    `index_copy`/`index_add` trace to ~10 shape/expand nodes each; at batch 1 a decode step is
    short enough that per-node overhead matters, and NonZero already yields [n, 1] indices.
    """

    @staticmethod
    def forward(ctx, out: torch.Tensor, rows: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return out.index_add(0, rows[:, 0], y)

    @staticmethod
    def symbolic(g, out, rows, y):
        return g.op("ScatterND", out, rows, y, reduction_s="add")


def moe_block_forward(self, hidden_states: torch.Tensor):
    """Drop-in MixtralSparseMoeBlock.forward for export: same numbers, same (output, router_logits)."""
    x = hidden_states.reshape(-1, self.hidden_dim)  # a Python int: a constant shape in the graph
    router_logits = self.gate(x)
    # Mixtral's routing: softmax over all experts, keep the top-k, renormalise them
    probs = F.softmax(router_logits, dim=-1, dtype=torch.float)
    top_w, chosen = torch.topk(probs, self.top_k, dim=-1)
    top_w = top_w / top_w.sum(dim=-1, keepdim=True)
    dense = torch.zeros_like(probs).scatter(1, chosen, top_w).to(x.dtype)  # [tokens, experts], 0 = not routed
    inter = self.experts[0].w1.weight.shape[0]  # a Python int: static slices, no shape arithmetic
    out = torch.zeros_like(x)
    for e, expert in enumerate(self.experts):
        weight = dense[:, e]
        rows = torch.nonzero(weight)  # [n, 1]: each routed row once
        picked = rows[:, 0]
        h = F.linear(x.index_select(0, picked), gate_up_weight(expert))
        y = expert.w2(F.silu(h[:, :inter]) * h[:, inter:]) * weight.index_select(0, picked)[:, None]
        out = AddRows.apply(out, rows, y)
    return out.reshape_as(hidden_states), router_logits
