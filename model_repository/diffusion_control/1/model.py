"""Triton Python-backend adapter: asks a running diffusion job to finish its image early (A1111's skip).

Inputs (max_batch_size 8, each row handled):
  REQUEST_ID  TYPE_STRING [1]  the Triton request id of the `diffusion` / `diffusion_stream` call
  ACTION      TYPE_STRING [1]  skip | interrupt (both end the image under way; the gateway stops the rest)
Output:
  ACCEPTED    TYPE_BOOL   [1]  true (the flag is left even when the job has not reached diffusion yet)
The flag is a file in this tritonserver's control directory (sotai.serving.control): the diffusion
loop looks for it before each step, so the image under way is decoded at the next step boundary.
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from sotai.errors import InvalidInput, SotaiError
from sotai.limits import decode_utf8
from sotai.serving.control import ControlFlags, control_dir


class TritonPythonModel:
    def initialize(self, args):
        self.flags = ControlFlags(control_dir())

    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        try:
            ids = pb_utils.get_input_tensor_by_name(request, "REQUEST_ID").as_numpy().reshape(-1)
            actions = pb_utils.get_input_tensor_by_name(request, "ACTION").as_numpy().reshape(-1)
            for request_id, action in zip(ids, actions):
                self.flags.request(decode_utf8("REQUEST_ID", request_id), decode_utf8("ACTION", action))
        except SotaiError as exc:
            code = pb_utils.TritonError.INVALID_ARG if isinstance(exc, InvalidInput) else pb_utils.TritonError.INTERNAL
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), code))
        accepted = np.ones((len(ids), 1), dtype=np.bool_)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("ACCEPTED", accepted)])
