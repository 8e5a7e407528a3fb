"""Serves one exported ONNX graph (text_encoder, text_encoder_2, unet or vae_decoder) on CPU hosts.

The embedded Triton has no onnxruntime backend, so `export` copies this adapter
beside each `model.onnx` when the target is `cpu`; on GPU hosts the same
directories use Triton's native onnxruntime or tensorrt_plan backends instead.

Tensors: exactly the ONNX graph's inputs and outputs (names, dtypes, shapes,
first axis = batch); config.pbtxt is generated from the graph by `export`.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from sotai.onnx_runner import OnnxRunner


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.runner = OnnxRunner(version_dir / "model.onnx", providers=["CPUExecutionProvider"])
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                inputs = {name: pb_utils.get_input_tensor_by_name(request, name) for name in self.runner.input_types}
                missing = [name for name, tensor in inputs.items() if tensor is None]
                if missing:
                    raise ValueError(f"missing input tensors {missing}")
                outputs = self.runner({k: v.as_numpy() for k, v in inputs.items()}, self.output_names)
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()]))
            except Exception as exc:  # one bad request must not fail the batch
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"{self.runner.path.parent.parent.name}: {exc}")))
        return responses
