"""Triton Python-backend adapter for the diffusion stage (BLS; thin: the loop is `sotai.diffusion.SdxlGenerator`).

Inputs (max_batch_size 8; every row of every request is handled, one after the other): PROMPT
  (TYPE_STRING [1], tags, comma-separated; the model's quality/rating tags are added), then one [1]
  input per generation parameter as declared in `sotai.params.GENERATION_PARAMS` (NEGATIVE_PROMPT,
  STEPS, CFG_SCALE, WIDTH, HEIGHT, SEED, NUM_IMAGES, SCHEDULER; optional ones take their declared
  default when absent). The config is rendered from the same table (sotai.contracts).
Outputs:
  IMAGE            TYPE_STRING [-1] one PNG per image (A1111 `parameters` chunk); in a batch whose rows
                                    ask for different NUM_IMAGES, shorter rows are padded with b""
  SEED_USED        TYPE_INT64  [1]
Decoupled (config `model_transaction_policy { decoupled: true }`): each request first gets one response
per denoising step with STEP, TOTAL_STEPS (TYPE_INT32 [1]) and PREVIEW (TYPE_STRING [1], a small PNG
decoded cheaply from the latents of the first image, b"" between previews), then the IMAGE/SEED_USED
response, then the final flag. Config parameter `preview_every` (default 1; 0 = no previews).

Calls, over BLS, the models text_encoder, text_encoder_2, unet and vae_decoder with the ONNX graphs'
tensor names. Files: <model dir>/<version>/components/ (tokenizers, scheduler and VAE configs, manifest).

Stopping (sotai.serving.control): before each step the loop asks whether the request was cancelled
(error CANCELLED), is past its own timeout (Triton's request `timeout`; error names `timeout_s`), or
was asked by `diffusion_control` to finish early (skip/interrupt: the image is decoded as it is).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sotai.diffusion import GenerationResult, SdxlGenerator, required_outputs
from sotai.diffusion.components import COMPONENTS_DIR, GRAPHS, Manifest
from sotai.errors import InvalidInput, SotaiError, StageError
from sotai.limits import decode_utf8
from sotai.params import PARAMS_BY_TENSOR, GenerationParams, params_from_row
from sotai.serving.control import ControlFlags, DeadlineExceeded, RequestCancelled, control_dir, stop_check

def bls_runner(model_name: str, output_names: list[str], device: "torch.device"):
    """A runner for SdxlGenerator that calls a Triton model by BLS, torch tensors in and out by DLPack.

    Outputs of GPU models live in GPU memory, where `as_numpy()` raises: they are taken as they are
    (DLPack) and asked for on the loop's device, so on a GPU instance with CUDA torch nothing goes
    through the host; with a CPU loop (this CPU build, or an image whose torch has no CUDA) they are
    asked for in CPU memory. An error keeps the model's name.
    """
    import torch
    from torch.utils.dlpack import from_dlpack, to_dlpack

    if device.type == "cuda":
        preferred = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_GPU, device.index or 0)
    else:
        preferred = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)

    def run(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        response = pb_utils.InferenceRequest(
            model_name=model_name,
            requested_output_names=output_names,
            inputs=[pb_utils.Tensor.from_dlpack(name, to_dlpack(value.contiguous())) for name, value in inputs.items()],
            preferred_memory=preferred,
        ).exec()
        if response.has_error():
            raise StageError(model_name, response.error().message())
        outputs = {}
        for name in output_names:
            tensor = from_dlpack(pb_utils.get_output_tensor_by_name(response, name).to_dlpack())
            if tensor.device != device:  # a backend that ignored the preference: one copy, not an error
                tensor = tensor.to(device)
            outputs[name] = tensor
        return outputs

    run.device_tensors = True  # SdxlGenerator passes torch tensors on its device, not numpy arrays
    return run


def loop_device(args: dict) -> "torch.device":
    """The instance's GPU when Triton placed it on one and torch can use it, else the CPU (logged)."""
    import torch

    if args.get("model_instance_kind") == "GPU":
        if torch.cuda.is_available():
            return torch.device("cuda", int(args.get("model_instance_device_id", 0)))
        pb_utils.Logger.log_warn(
            "diffusion: the instance is on a GPU but this torch has no CUDA; the loop's tensors (latents, "
            "embeddings: a few MB per step) go through host memory, the graphs still run on the GPU")
    return torch.device("cpu")


def _components_dir(model_dir: Path, version: str) -> Path:
    """Triton passes the model's own folder (`<repo>/diffusion`); accept the repository root too."""
    for candidate in (model_dir / version / COMPONENTS_DIR, model_dir / "diffusion" / version / COMPONENTS_DIR):
        if candidate.is_dir():
            return candidate
    return model_dir / version / COMPONENTS_DIR  # Manifest.load names the missing file and `make export`


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.preview_every = int(params.get("preview_every", "1") or 1)
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        components = _components_dir(Path(args["model_repository"]), args["model_version"])
        outputs = required_outputs(Manifest.load(components))
        device = loop_device(args)
        self.generator = SdxlGenerator(components, {g: bls_runner(g, outputs[g], device) for g in GRAPHS},
                                       device=str(device))
        self.control = ControlFlags(control_dir())

    def execute(self, requests):
        if self.decoupled:
            for request in requests:
                self._stream(request)
            return None
        return [self._respond(request) for request in requests]

    # -- one request ---------------------------------------------------------------------------

    def _respond(self, request, progress=None, is_cancelled=None):
        started = time.monotonic()
        is_cancelled = is_cancelled or request.is_cancelled
        try:
            results = [self.generator(prompt, params, progress, self._should_stop(request, params, started, is_cancelled))
                       for prompt, params in self._decode(request)]
        except SotaiError as exc:
            return _error(exc)
        except Exception as exc:  # a bug must fail this request, not the batch
            return _error(StageError("diffusion", f"{type(exc).__name__}: {exc}"))
        finally:
            self.control.clear(request.request_id())
        return pb_utils.InferenceResponse(output_tensors=_encode(results))

    def _should_stop(self, request, params: GenerationParams, started: float, is_cancelled):
        """The loop's stop hook for this request: cancelled, past its timeout, or asked to finish early."""
        return stop_check(total=params.steps, is_cancelled=is_cancelled, started=started,
                          timeout_s=request.timeout() / 1e6, flags=self.control, request_id=request.request_id())

    def _stream(self, request):
        sender = request.get_response_sender()

        def progress(step: int, total: int, preview: np.ndarray | None) -> None:
            show = preview is not None and self.preview_every > 0 and (step % self.preview_every == 0 or step == total)
            sender.send(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("STEP", np.array([[step]], dtype=np.int32)),
                pb_utils.Tensor("TOTAL_STEPS", np.array([[total]], dtype=np.int32)),
                pb_utils.Tensor("PREVIEW", np.array([[_png(preview) if show else b""]], dtype=np.object_)),
            ]))

        # A decoupled request's cancellation is seen through its response sender.
        response = self._respond(request, progress, sender.is_cancelled)
        try:
            sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception:  # pb_utils raises when the request was cancelled: nobody is listening anymore
            if not sender.is_cancelled():
                raise

    def _decode(self, request) -> list[tuple[str, GenerationParams]]:
        """(prompt, checked parameters) per batch row; the inputs are those declared in sotai.params."""
        columns = {}
        for name in ("PROMPT", *PARAMS_BY_TENSOR):
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            columns[name] = None if tensor is None else tensor.as_numpy().reshape(-1)
        if columns["PROMPT"] is None:
            raise InvalidInput("PROMPT", None, "is a required input")
        return [(decode_utf8("PROMPT", prompt),
                 params_from_row(lambda name: None if columns[name] is None else columns[name][i]))
                for i, prompt in enumerate(columns["PROMPT"])]

    def finalize(self):
        self.generator = None


def _encode(results: list[GenerationResult]):
    width = max(len(r.pngs) for r in results)
    images = np.array([r.pngs + [b""] * (width - len(r.pngs)) for r in results], dtype=np.object_)
    seeds = np.array([[r.seed] for r in results], dtype=np.int64)
    return [pb_utils.Tensor("IMAGE", images), pb_utils.Tensor("SEED_USED", seeds)]


def _error(exc: SotaiError):
    code = pb_utils.TritonError.INVALID_ARG if isinstance(exc, InvalidInput) else pb_utils.TritonError.INTERNAL
    if isinstance(exc, (RequestCancelled, DeadlineExceeded)):
        code = pb_utils.TritonError.CANCELLED
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), code))
