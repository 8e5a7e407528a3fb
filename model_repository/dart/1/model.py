"""Triton Python-backend adapter for the Dart stage (thin: the logic is `sotai.dart.TagCompleter`).

Inputs (max_batch_size 8, dynamic batching; every row of every request is handled):
  CANDIDATES  TYPE_STRING [1]  the RAG JSON: {"candidates": [...ranked...], "selected": [{tag, score, category,
                               reason}, ...], "negated": [tag, ...]}; Dart completes "selected" (the
                               selection step's tags) when present, else "candidates" as given (a
                               user's own tags), and never adds a negated or contradicting tag
  WIDTH       TYPE_INT32  [1]
  HEIGHT      TYPE_INT32  [1]
  RATING      TYPE_STRING [1]  sfw | general | sensitive | nsfw | questionable | explicit
  SEED        TYPE_INT64  [1]  -1 = random
Outputs:
  TAGS        TYPE_STRING [1]  JSON list of the final {tag, category, score, reason}, Animagine order
  PROMPT      TYPE_STRING [1]  the same tags, comma-separated
Files: <model_repository>/dart/<version>/model.onnx + tokenizer.json + config.json.
Config parameters (optional): temperature, top_p, top_k, max_new_tokens, ban_tags (JSON list),
length, identity, threads, cpu_fallback (fail | warn: a GPU instance whose onnxruntime cannot use the GPU).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sotai.dart import DartRequest, DartSampling, TagCompleter
from sotai.dart.session import DartDevice, check_providers, preload_cuda_libraries
from sotai.errors import InvalidInput, SotaiError
from sotai.limits import SEED_RANGE, check_int, decode_utf8


def _parameters(model_config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


def _sampling_from(params: dict[str, str]) -> DartSampling:
    """The config's sampling knobs over the model-card defaults (validated once, at load)."""
    s = DartSampling()
    kinds = {"temperature": float, "top_p": float, "top_k": int, "max_new_tokens": int, "length": str, "identity": str}
    overrides = {k: cast(params[k]) for k, cast in kinds.items() if params.get(k, "").strip()}
    if params.get("ban_tags", "").strip():
        overrides["ban_tags"] = tuple(json.loads(params["ban_tags"]))
    return replace(s, **overrides).checked()


def _model_dir(repository: Path, version: str) -> Path:
    """Triton passes the model's own folder (`<repo>/dart`); accept the repository root too."""
    for candidate in (repository / version, repository / "dart" / version):
        if (candidate / "model.onnx").is_file():
            return candidate
    return repository / version  # TagCompleter names the missing file and `make export`


class TritonPythonModel:
    def initialize(self, args):
        params = _parameters(json.loads(args["model_config"]))
        self.sampling = _sampling_from(params)
        model_dir = _model_dir(Path(args["model_repository"]), args["model_version"])
        threads = int(params.get("threads", "0") or 0)
        # A GPU instance runs Dart on its GPU or fails to load (cpu_fallback "warn": serve on the CPU, loudly).
        device = DartDevice.for_instance(args, params.get("cpu_fallback", "fail") or "fail")
        why = preload_cuda_libraries() if device.kind == "gpu" else None
        self.completer = TagCompleter(model_dir, device.providers(), threads=threads)
        line = check_providers(self.completer.decoder.providers, device, why)
        (pb_utils.Logger.log_warn if line.startswith("WARNING") else pb_utils.Logger.log_info)(line)

    def execute(self, requests):
        # 1. decode every row of every request; a request with a bad row gets its own error
        rows: list[DartRequest] = []
        spans: list[tuple[int, int] | SotaiError] = []
        for request in requests:
            try:
                decoded = self._decode(request)
            except SotaiError as exc:
                spans.append(exc)
                continue
            spans.append((len(rows), len(rows) + len(decoded)))
            rows.extend(decoded)
        # 2. one Dart run over all rows (the dynamic batch)
        results = self.completer.complete_batch(rows) if rows else []
        # 3. one response per request
        responses = []
        for span in spans:
            if isinstance(span, SotaiError):
                responses.append(_error(span))
                continue
            mine = results[span[0]:span[1]]
            failed = next((r for r in mine if isinstance(r, SotaiError)), None)
            if failed is not None:
                responses.append(_error(failed))
                continue
            tags = np.array([[json.dumps(r.tags, ensure_ascii=False).encode()] for r in mine], dtype=np.object_)
            prompt = np.array([[r.prompt.encode()] for r in mine], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("TAGS", tags), pb_utils.Tensor("PROMPT", prompt)]))
        return responses

    def _decode(self, request) -> list[DartRequest]:
        def column(name):
            return pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)

        candidates, width, height, rating, seed = (column(n) for n in ("CANDIDATES", "WIDTH", "HEIGHT", "RATING", "SEED"))
        out = []
        for i in range(len(candidates)):
            try:
                payload = json.loads(decode_utf8("CANDIDATES", candidates[i]))
            except json.JSONDecodeError as exc:
                raise InvalidInput("CANDIDATES", candidates[i][:64], f"must be JSON ({exc.msg})") from None
            if isinstance(payload, dict):
                cands = payload["selected"] if "selected" in payload else payload.get("candidates")
                negated = payload.get("negated", [])
            else:
                cands, negated = payload, []
            if not isinstance(negated, list):
                raise InvalidInput("CANDIDATES.negated", negated, "must be a list of tag names")
            s = check_int("seed", seed[i], *SEED_RANGE)
            out.append(DartRequest(
                candidates=cands, width=int(width[i]), height=int(height[i]), rating=decode_utf8("RATING", rating[i]),
                sampling=replace(self.sampling, seed=None if s == -1 else s), negated=tuple(negated),
            ))
        return out

    def finalize(self):
        self.completer = None


def _error(exc: SotaiError):
    code = pb_utils.TritonError.INVALID_ARG if isinstance(exc, InvalidInput) else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), code))
