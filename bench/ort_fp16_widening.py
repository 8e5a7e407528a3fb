"""Why an fp16 graph takes about twice its weights to load in onnxruntime's CPU execution provider
(issue 12: the real-size fp16 UNet, 5.13 GB of weights, loads in 11.9 GiB there).

The CPU EP has no fp16 MatMul/Conv kernels: its InsertCastTransformer wraps such nodes in Casts to
fp32 and, at the default optimization level, constant folding turns each fp16 weight into an fp32
copy. This builds a graph of fp16 MatMuls (256 MiB of fp16 weights) and loads it at both levels:

    .venv/bin/python bench/ort_fp16_widening.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

N, LAYERS = 4096, 8  # 8 weights of 4096 x 4096 fp16 = 256 MiB


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_graph(path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, prev = [], [], "x"
    for i in range(LAYERS):
        weights.append(numpy_helper.from_array((rng.random((N, N)) * 0.01).astype(np.float16), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    graph = helper.make_graph(nodes, "fp16_matmuls", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, N])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT16, [1, N])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def load(path: str, level: str) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {"default": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]
    before = rss_mib()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    print(f"optimization {level:<8}: session adds {rss_mib() - before:6.0f} MiB for {N * N * 2 * LAYERS / 2**20:.0f} "
          "MiB of fp16 weights", flush=True)
    del session


def main() -> int:
    if len(sys.argv) == 3:  # one load per process, so each RSS is its own
        load(sys.argv[1], sys.argv[2])
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp16_matmuls.onnx"
        write_graph(path)
        for level in ("default", "disabled"):
            subprocess.run([sys.executable, __file__, str(path), level], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
