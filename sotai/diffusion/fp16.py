"""What stays fp32 in the fp16 UNet: the timestep's sinusoidal embedding, as diffusers keeps it.

diffusers computes `get_timestep_embedding` in fp32 (the scheduler's float timesteps, exp/sin/cos of
frequencies down to 1e-4) and casts only its result to the UNet's dtype. In fp16, a timestep near 999
has a resolution of 0.5 and sin(t * f) of large arguments loses every digit, so converting those ops
shifts the noise level the UNet believes it sees. The converter is told to leave them alone.
"""

from __future__ import annotations

# Ops that end the embedding: the time MLP's first linear layer takes the (cast) embedding.
_EMBEDDING_ENDS = {"MatMul", "Gemm"}


def timestep_embedding_nodes(model, timestep_input: str = "timestep") -> list[str]:
    """Names of the nodes from the `timestep` input up to the time MLP (exclusive): reshape/expand,
    the sinusoid (Mul, Sin, Cos, Concat, Slice) and the Constant nodes feeding them."""
    graph = model.graph
    if timestep_input not in {i.name for i in graph.input}:
        return []
    consumers: dict[str, list] = {}
    producers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    cone: dict[str, object] = {}
    frontier = [timestep_input]
    while frontier:
        value = frontier.pop()
        for node in consumers.get(value, []):
            if node.name in cone or node.op_type in _EMBEDDING_ENDS:
                continue
            cone[node.name] = node
            frontier.extend(node.output)
    constants = {producers[i].name for node in cone.values() for i in node.input
                 if i in producers and producers[i].op_type == "Constant"}
    return sorted(set(cone) | constants)


FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto element types


def _cast_to(node) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def value_types(graph) -> dict[str, int]:
    """Element type of every value the graph declares (inputs, outputs, value_info, initializers, Constants)."""
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({i.name: i.data_type for i in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
        cast = _cast_to(node)
        if cast is not None:
            types[node.output[0]] = cast
    return types


def drop_cast_round_trips(model) -> int:
    """Remove fp32 -> fp16 -> fp32 Cast pairs; returns how many.

    onnxruntime's converter keeps each blocked node fp32 on its own: it casts every output to fp16
    and back to fp32 for the next blocked node, so a chain of blocked nodes still rounds through
    fp16 at every edge (the timestep, the frequencies, sin/cos). Wiring the fp32 value straight to
    the consumer makes the chain really fp32; the fp16 copy stays where an fp16 node reads it.
    """
    graph = model.graph
    types = value_types(graph)
    producers = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    dropped = []
    for back in graph.node:
        if _cast_to(back) != FLOAT or back.output[0] in outputs:
            continue
        down = producers.get(back.input[0])
        if down is None or _cast_to(down) != FLOAT16 or types.get(down.input[0]) != FLOAT:
            continue
        rename[back.output[0]] = down.input[0]
        dropped.append(back)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for node in dropped:
        graph.node.remove(node)
    used = {i for node in graph.node for i in node.input} | outputs
    for node in [n for n in graph.node if _cast_to(n) == FLOAT16 and n.output[0] not in used]:
        graph.node.remove(node)
    return len(dropped)


def fp16_values_between(model, start: str, names: list[str]) -> list[str]:
    """fp16 values on any float path from graph input `start` into the nodes `names` (should be none).
    Integer values (shapes, indices) end a path: they carry no precision."""
    graph = model.graph
    types = value_types(graph)
    producers = {out: node for node in graph.node for out in node.output}
    wanted = set(names)
    bad, stack, seen = [], [i for n in graph.node if n.name in wanted for i in n.input], set()
    while stack:
        value = stack.pop()
        if value in seen or not value or types.get(value, FLOAT) not in (FLOAT, FLOAT16):
            continue
        seen.add(value)
        if types.get(value) == FLOAT16:
            bad.append(value)
        node = producers.get(value)
        if node is not None:
            stack.extend(node.input)
    return sorted(bad)
