"""The decode loop over Dart's ONNX graph, KV cache in and out, batched with left padding.

optimum's ORTModelForCausalLM is not used: it sizes the cache from `num_attention_heads`,
wrong for Dart's single KV head. This loop reads the cache shape from the graph itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from sotai.errors import MissingArtifact
from sotai.onnx_runner import default_providers

# picks the next token for row b from its last logits; returns (token, prob)
Picker = Callable[[int, np.ndarray], tuple[int, float]]


class OnnxDecoder:
    """Greedy/sampled decoding of many prompts at once over `model.onnx` (inputs: input_ids,
    attention_mask[, position_ids], past_key_values.{i}.key/value; outputs: logits, present.{i}.*)."""

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int = 0):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise MissingArtifact("Dart ONNX graph", self.path, "make export")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=providers or default_providers())
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = sorted((n for n in inputs if n.startswith("past_key_values.")), key=_layer_key)
        if not self.past_names:
            raise MissingArtifact("Dart ONNX graph", self.path, "make export", detail="it has no KV-cache inputs")
        first = inputs[self.past_names[0]]
        _, self.kv_heads, _, self.head_dim = first.shape
        self.kv_dtype = np.float16 if "float16" in first.type else np.float32
        self.has_position_ids = "position_ids" in inputs
        outputs = [o.name for o in self.session.get_outputs()]
        self.present_names = ["present" + n[len("past_key_values"):] for n in self.past_names]
        self.output_names = ["logits", *self.present_names]
        missing = set(self.output_names) - set(outputs)
        if missing:
            raise MissingArtifact("Dart ONNX graph", self.path, "make export", detail=f"missing outputs {sorted(missing)}")

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Full-sequence logits [B, T, V] with an empty cache (used by parity checks)."""
        feed = self._feed(input_ids, attention_mask, self._empty_cache(input_ids.shape[0]))
        return self.session.run(["logits"], feed)[0]

    def generate(
        self, prompts: list[list[int]], pick: Picker, *, pad_id: int, end_ids: set[int], max_new_tokens: int,
        limits: list[int] | None = None,
    ) -> list[list[tuple[int, float]]]:
        """Decode each prompt until `pick` returns an end id or the row has `limits[b]` (default
        `max_new_tokens`) new tokens; returns the new (token, prob) pairs per row, end token excluded."""
        batch = len(prompts)
        limits = limits or [max_new_tokens] * batch
        width = max(len(p) for p in prompts)
        # 1. left-pad so every row's next token sits in the last column
        ids = np.full((batch, width), pad_id, dtype=np.int64)
        mask = np.zeros((batch, width), dtype=np.int64)
        for b, p in enumerate(prompts):
            ids[b, width - len(p):] = p
            mask[b, width - len(p):] = 1
        cache = self._empty_cache(batch)
        out: list[list[tuple[int, float]]] = [[] for _ in prompts]
        done = [False] * batch
        # 2. prefill, then one token per step with the cache fed back
        for _ in range(max(limits)):
            logits, *present = self.session.run(self.output_names, self._feed(ids, mask, cache))
            cache = dict(zip(self.past_names, present))
            step = np.full((batch, 1), pad_id, dtype=np.int64)
            for b in range(batch):
                if done[b]:
                    continue
                tok, prob = pick(b, logits[b, -1])
                if tok in end_ids:
                    done[b] = True
                else:
                    out[b].append((tok, prob))
                    step[b, 0] = tok
                    done[b] = len(out[b]) >= limits[b]
            if all(done):
                break
            ids = step
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
        return out

    def _empty_cache(self, batch: int) -> dict[str, np.ndarray]:
        return {n: np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=self.kv_dtype) for n in self.past_names}

    def _feed(self, ids: np.ndarray, mask: np.ndarray, cache: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {"input_ids": ids, "attention_mask": mask, **cache}
        if self.has_position_ids:
            pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
            feed["position_ids"] = pos[:, -ids.shape[1]:]
        return feed


def _layer_key(name: str) -> tuple[int, int]:
    _, layer, kind = name.split(".")
    return int(layer), 0 if kind == "key" else 1
