"""The decode loop over Dart's ONNX graph, KV cache in and out, batched with left padding.

optimum's ORTModelForCausalLM is not used: it sizes the cache from `num_attention_heads`,
wrong for Dart's single KV head. This loop reads the cache shape from the graph itself.

Per step, the cache stays where onnxruntime put it (IO binding: each step's `present.*`
OrtValues are bound as the next step's `past_key_values.*`, no host round trip on GPU); only
the last position's logits come back to the host for sampling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from sotai.errors import MissingArtifact, SotaiError
from sotai.onnx_runner import default_providers

# picks the next token for row b from its last logits; returns (token, prob)
Picker = Callable[[int, np.ndarray], tuple[int, float]]

log = logging.getLogger(__name__)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
CpuFallback = Literal["fail", "warn"]


@dataclass(frozen=True)
class DartDevice:
    """Where Dart runs, as data: the Triton instance's kind and GPU, and what to do when onnxruntime
    cannot use that GPU (it then quietly runs on the CPU, ~10x slower): fail the load (default) or warn."""

    kind: Literal["cpu", "gpu"] = "cpu"
    device_id: int = 0
    cpu_fallback: CpuFallback = "fail"

    @classmethod
    def for_instance(cls, args: dict, cpu_fallback: str = "fail") -> "DartDevice":
        """From a Triton Python model's `initialize` args (model_instance_kind, model_instance_device_id)."""
        if cpu_fallback not in ("fail", "warn"):
            raise SotaiError(f"dart config parameter cpu_fallback={cpu_fallback!r} is invalid: must be fail or warn")
        if args.get("model_instance_kind") == "GPU":
            return cls("gpu", int(args.get("model_instance_device_id", 0) or 0), cpu_fallback)
        return cls("cpu", 0, cpu_fallback)

    def providers(self) -> list:
        """onnxruntime's providers argument. device_id is an int: ORT's options come back as strings."""
        if self.kind == "gpu":
            return [(CUDA, {"device_id": self.device_id}), CPU]
        return [CPU]


def preload_cuda_libraries() -> str | None:
    """Load onnxruntime's CUDA and cuDNN libraries before the CUDA provider needs them; None if done.

    In Triton's Python stub nothing else has loaded them, and a CUDA provider whose libraries do
    not load is dropped without an exception (ORT only logs it). onnxruntime >= 1.21 has
    `preload_dlls`; older ones rely on the loader's path. Returns what went wrong, for the log.
    """
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no {CUDA}: install onnxruntime-gpu (docker/requirements-gpu.txt)"
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return None
    try:
        preload(cuda=True, cudnn=True, msvc=False)
    except Exception as exc:  # noqa: BLE001 - reported, then the session check decides
        return f"onnxruntime.preload_dlls failed: {exc}"
    return None


def check_providers(in_use: list[str], device: DartDevice, why: str | None = None) -> str:
    """The line to log about the providers a session really uses; on a GPU instance that got only
    the CPU, a SotaiError (cpu_fallback=fail) or a warning line (warn)."""
    line = f"dart: onnxruntime providers in use {in_use} (instance: {device.kind} {device.device_id})"
    if device.kind != "gpu" or (in_use and in_use[0] == CUDA):
        return line
    problem = (f"dart is on GPU {device.device_id} but onnxruntime runs it on {in_use[0] if in_use else 'nothing'}"
               + (f" ({why})" if why else "") + ". Fix the CUDA setup (onnxruntime-gpu for CUDA 12, "
               "docker/requirements-gpu.txt), or set the dart config parameter cpu_fallback to \"warn\" to serve on the CPU")
    if device.cpu_fallback == "fail":
        raise SotaiError(problem)
    log.warning(problem)
    return "WARNING: " + problem


def ort_device(providers_in_use: list[str], provider_options: dict) -> tuple[str, int]:
    """(OrtValue device, id) of a session's first provider; ORT reports device_id as a string."""
    if providers_in_use and providers_in_use[0] == CUDA:
        return "cuda", int(provider_options.get(CUDA, {}).get("device_id", 0) or 0)
    return "cpu", 0


class OnnxDecoder:
    """Decoding of many prompts at once over `model.onnx` (inputs: input_ids, attention_mask
    [, position_ids], past_key_values.{i}.key/value; outputs: logits, present.{i}.key/value)."""

    def __init__(self, path: Path, providers: list | None = None, threads: int = 0):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise MissingArtifact("Dart ONNX graph", self.path, "make export")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers or default_providers())
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise MissingArtifact("Dart ONNX graph", self.path, "make export", detail=f"cannot be loaded: {exc}") from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = sorted((n for n in inputs if n.startswith("past_key_values.")), key=_layer_key)
        if not self.past_names:
            raise MissingArtifact("Dart ONNX graph", self.path, "make export", detail="it has no KV-cache inputs")
        first = inputs[self.past_names[0]]
        _, self.kv_heads, _, self.head_dim = first.shape
        self.kv_dtype = np.float16 if "float16" in first.type else np.float32
        self.has_position_ids = "position_ids" in inputs
        self.present_names = ["present" + n[len("past_key_values"):] for n in self.past_names]
        missing = {"logits", *self.present_names} - {o.name for o in self.session.get_outputs()}
        if missing:
            raise MissingArtifact("Dart ONNX graph", self.path, "make export", detail=f"missing outputs {sorted(missing)}")
        self.providers = self.session.get_providers()  # what ORT really uses (it drops a CUDA it cannot load)
        self.device = ort_device(self.providers, self.session.get_provider_options())

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Full-sequence logits [B, T, V] with an empty cache (used by parity checks)."""
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        feed.update({n: np.zeros((input_ids.shape[0], self.kv_heads, 0, self.head_dim), self.kv_dtype) for n in self.past_names})
        if self.has_position_ids:
            feed["position_ids"] = _positions(attention_mask, input_ids.shape[1])
        return self.session.run(["logits"], feed)[0]

    def generate(
        self, prompts: list[list[int]], pick: Picker, *, pad_id: int, end_ids: set[int], max_new_tokens: int,
        limits: list[int] | None = None,
    ) -> list[list[tuple[int, float]]]:
        """Decode each prompt until `pick` returns an end id or the row has `limits[b]` (default
        `max_new_tokens`) new tokens; returns the new (token, prob) pairs per row, end token excluded."""
        import onnxruntime as ort

        batch = len(prompts)
        limits = limits or [max_new_tokens] * batch
        width = max(len(p) for p in prompts)
        # 1. left-pad so every row's next token sits in the last column
        ids = np.full((batch, width), pad_id, dtype=np.int64)
        mask = np.zeros((batch, width + max(limits)), dtype=np.int64)
        for b, p in enumerate(prompts):
            ids[b, width - len(p):] = p
            mask[b, width - len(p):width] = 1
        device, device_id = self.device
        cache = [ort.OrtValue.ortvalue_from_numpy(np.zeros((batch, self.kv_heads, 0, self.head_dim), self.kv_dtype), device, device_id)
                 for _ in self.past_names]
        binding = self.session.io_binding()
        out: list[list[tuple[int, float]]] = [[] for _ in prompts]
        done = [False] * batch
        seen = width
        # 2. prefill, then one token per step with the cache fed back
        for _ in range(max(limits)):
            binding.bind_cpu_input("input_ids", ids)
            binding.bind_cpu_input("attention_mask", mask[:, :seen])
            if self.has_position_ids:
                binding.bind_cpu_input("position_ids", _positions(mask[:, :seen], ids.shape[1]))
            for name, value in zip(self.past_names, cache):
                binding.bind_ortvalue_input(name, value)
            binding.bind_output("logits", device, device_id)
            for name in self.present_names:
                binding.bind_output(name, device, device_id)
            self.session.run_with_iobinding(binding)
            logits, *cache = binding.get_outputs()
            last = logits.numpy()[:, -1]
            step = np.full((batch, 1), pad_id, dtype=np.int64)
            for b in range(batch):
                if done[b]:
                    continue
                tok, prob = pick(b, last[b])
                if tok in end_ids:
                    done[b] = True
                else:
                    out[b].append((tok, prob))
                    step[b, 0] = tok
                    done[b] = len(out[b]) >= limits[b]
            if all(done):
                break
            ids = step
            mask[:, seen] = 1
            seen += 1
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
        return out


def _positions(mask: np.ndarray, last: int) -> np.ndarray:
    return np.clip(np.cumsum(mask, axis=1) - 1, 0, None)[:, -last:]


def _layer_key(name: str) -> tuple[int, int]:
    _, layer, kind = name.split(".")
    return int(layer), 0 if kind == "key" else 1
