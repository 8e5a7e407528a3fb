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


# Offsets in the new data file are page aligned: onnxruntime memory-maps aligned external tensors
# instead of copying them (at most 4 KiB of padding per tensor).
EXTERNAL_DATA_ALIGNMENT = 4096


def all_tensors(model):
    """Every TensorProto of the model: initializers and node attributes (Constant values), subgraphs too.

    Only initializers would miss the Constant nodes an exporter also moves into the data file (the
    real UNet's /add_time_proj constants): those would keep pointing into the old file, or keep their
    fp32 bytes under an fp16 type, which onnx's checker accepts and onnxruntime refuses to load."""

    yield from model.graph.initializer
    yield from attribute_tensors(model.graph)


def attribute_tensors(graph):
    """The tensors in node attributes (Constant values), through subgraphs (whose initializers too)."""
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from sub.initializer
                yield from attribute_tensors(sub)


def inline_constant_data(model, base_dir) -> int:
    """Read the external bytes of every Constant node's tensor into the graph; returns how many.

    Constants are small (shapes, scales, a few embeddings rows), but shape inference and
    onnxruntime's loader both need their values in the graph; initializers stay external."""
    from pathlib import Path

    from onnx import TensorProto
    from onnx.external_data_helper import uses_external_data

    count = 0
    for tensor in attribute_tensors(model.graph):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        with open(Path(base_dir) / info["location"], "rb") as f:
            f.seek(int(info.get("offset", 0)))
            tensor.raw_data = f.read(int(info["length"]))
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT
        count += 1
    return count


def external_key(tensor) -> tuple[str, int]:
    """(file, offset) of an externally stored tensor: its identity, named or not."""
    info = {e.key: e.value for e in tensor.external_data}
    return info["location"], int(info.get("offset", 0))


def stream_external_data(model, source_dir, dest_file, location: str, narrowed: set[tuple[str, int]]) -> dict:
    """Rewrite every externally stored tensor of `model` (all_tensors) into `dest_file`, one at a time.

    `narrowed`: external_key()s of the tensors that were fp32 before the converter ran without their
    data; those it retyped to fp16 are read as fp32 from the old file and written as fp16 (with the
    converter's own clamping to fp16's finite range). Every other external tensor is copied as is.
    The tensors are then pointed at `location` (the data file's final name, relative to the graph).
    Reads use plain file reads, not a memory map: the process holds one tensor, not the pages of a
    10 GB file. Returns {"tensors", "narrowed", "bytes_in", "bytes_out"}.
    """
    from pathlib import Path

    import numpy as np
    from onnx import TensorProto, helper
    from onnx.external_data_helper import uses_external_data
    from onnxruntime.transformers.float16 import convert_np_to_float16

    source_dir, dest_file = Path(source_dir), Path(dest_file)
    sources: dict[str, object] = {}
    figures = {"tensors": 0, "narrowed": 0, "bytes_in": 0, "bytes_out": 0}
    try:
        with open(dest_file, "wb") as out:
            for tensor in all_tensors(model):
                if not uses_external_data(tensor):
                    continue
                info = {e.key: e.value for e in tensor.external_data}
                src = sources.get(info["location"])
                if src is None:
                    src = sources[info["location"]] = open(source_dir / info["location"], "rb")
                src.seek(int(info.get("offset", 0)))
                raw = src.read(int(info["length"]))
                figures["bytes_in"] += len(raw)
                if external_key(tensor) in narrowed and tensor.data_type == TensorProto.FLOAT16:
                    raw = convert_np_to_float16(np.frombuffer(raw, dtype=np.float32)).tobytes()
                    figures["narrowed"] += 1
                count = 1
                for d in tensor.dims:
                    count *= d
                expected = count * np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
                if len(raw) != expected:
                    name = tensor.name or "<a Constant's tensor>"
                    raise ValueError(f"{name}: {len(raw)} bytes of external data for {count} elements of "
                                     f"{TensorProto.DataType.Name(tensor.data_type)} ({expected} bytes)")
                out.write(b"\0" * (-out.tell() % EXTERNAL_DATA_ALIGNMENT))
                offset = out.tell()
                out.write(raw)
                del tensor.external_data[:]
                for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
                figures["tensors"] += 1
                figures["bytes_out"] += len(raw)
    finally:
        for handle in sources.values():
            handle.close()
    return figures


def sort_topologically(graph) -> None:
    """Reorder graph.node so every node comes after the producers of its inputs (onnx's checker demands
    it; the converter appends its Cast nodes at the end). Stable: already ordered nodes keep their order."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    produced = {out for node in graph.node for out in node.output}

    def needs(node) -> set[str]:
        names = set(node.input)
        for attr in node.attribute:  # subgraphs (If/Loop) read outer values too
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                names |= {i for n in sub.node for i in n.input}
        return {n for n in names if n in produced}

    pending = list(graph.node)
    wanted = {id(node): needs(node) for node in pending}
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if wanted[id(node)] <= ready:
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle through {rest[0].name!r}")
        pending = rest
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
