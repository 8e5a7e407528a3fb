"""A named-tensor callable over an onnxruntime session.

Used in-process (tests, local pipelines) and by the Python-backend adapter that
serves an ONNX file in Triton on CPU hosts (GPU hosts use Triton's native
onnxruntime/TensorRT backends with the same tensor names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from sotai.errors import MissingArtifact


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxRunner:
    """`runner({"input_ids": arr}) -> {"last_hidden_state": arr, ...}`."""

    def __init__(self, path: Path | str, *, providers: list[str] | None = None, fix: str = "make export"):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise MissingArtifact("ONNX model", self.path, fix)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers or default_providers())
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise MissingArtifact("ONNX model", self.path, fix, detail=f"cannot be loaded: {exc}") from exc
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, inputs: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        missing = set(self.input_types) - set(inputs)
        if missing:
            raise KeyError(f"{self.path.parent.name}: missing inputs {sorted(missing)}")
        feed = {name: inputs[name] for name in self.input_types}
        names = outputs or self.output_names
        return dict(zip(names, self.session.run(names, feed)))
