"""What the server serves: each model's inputs, outputs and transaction policy, read from Triton.

The client builds its requests from the server's own model configs rather than from a table
compiled into it, so a repository whose models take extra optional inputs (RATING, QUALITY_TAGS ...)
or that adds a streaming variant (`diffusion_stream`, decoupled) is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sotai.dtypes import numpy_type, wire_dtype
from sotai.errors import InvalidInput, SotaiError

# Models the client may call; `<stage>_stream` is the decoupled variant that streams progress.
PIPELINE = ("sotai", "rag", "dart", "diffusion", "diffusion_stream", "diffusion_control")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    inputs: dict[str, dict]  # name -> config entry (data_type, dims, optional)
    outputs: tuple[str, ...]
    batched: bool
    decoupled: bool

    @classmethod
    def from_config(cls, config: dict) -> "ModelInfo":
        config = config.get("config", config)  # gRPC wraps it in {"config": ...}
        return cls(
            name=config["name"],
            inputs={t["name"]: t for t in config.get("input", [])},
            outputs=tuple(t["name"] for t in config.get("output", [])),
            batched=int(config.get("max_batch_size", 0)) > 0,
            decoupled=bool(config.get("model_transaction_policy", {}).get("decoupled", False)),
        )

    def encode(self, tc, values: dict[str, object], defaults: dict[str, object]) -> list:
        """tritonclient InferInputs for one row; `values` the model lacks must equal `defaults`.

        A value the model cannot take and that differs from the default is an error: sending it
        nowhere would silently ignore what the caller asked for.
        """
        inputs = []
        for name, value in values.items():
            spec = self.inputs.get(name)
            if spec is None:
                if name in defaults and _same(value, defaults[name]):
                    continue
                raise InvalidInput(name.lower(), value, f"this server's `{self.name}` model has no {name} input")
            wire, dtype = wire_dtype(spec["data_type"]), numpy_type(spec["data_type"])
            if dtype is np.object_:
                value = value.encode("utf-8") if isinstance(value, str) else value
            arr = np.array([value], dtype=dtype).reshape([1] * (1 + self.batched))
            tensor = tc.InferInput(name, list(arr.shape), wire)
            tensor.set_data_from_numpy(arr)
            inputs.append(tensor)
        missing = [n for n, spec in self.inputs.items() if n not in values and not spec.get("optional", False)]
        if missing:
            raise SotaiError(f"`{self.name}` needs inputs {missing} this client does not know: update the client")
        return inputs


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and np.isclose(a, b))


def config_kwargs(protocol: str) -> dict:
    """tritonclient's gRPC client returns protobufs unless asked for JSON; its HTTP client returns JSON."""
    return {"as_json": True} if protocol == "grpc" else {}


def repository_states(index: dict | list) -> dict[str, bool]:
    """Triton's repository index (either protocol's form) -> model name: READY or not."""
    models = index.get("models", []) if isinstance(index, dict) else index
    return {m["name"]: m.get("state") == "READY" for m in models}


def pipeline_models(ready: dict[str, bool], url: str) -> list[str]:
    """The pipeline models to read configs of; a pipeline model still loading makes Triton unavailable.

    Not cached then: the next call looks again, so a restarted server is used as soon as it is ready.
    """
    from .errors import TritonUnavailable

    loading = [name for name in PIPELINE if name in ready and not ready[name]]
    if loading:
        raise TritonUnavailable(url, f"models not ready yet: {', '.join(loading)}")
    return [name for name in PIPELINE if ready.get(name)]


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelInfo]

    def has(self, name: str) -> bool:
        return name in self.models

    def get(self, name: str) -> ModelInfo:
        try:
            return self.models[name]
        except KeyError:
            raise SotaiError(f"the server does not serve a `{name}` model: export the repository again "
                             "(`make export`) and restart Triton") from None
