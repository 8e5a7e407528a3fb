"""Synchronous client over tritonclient (gRPC or HTTP)."""

from __future__ import annotations

import json
from typing import Literal

import numpy as np

from sotai.contracts import DART, RAG, SOTAI, ModelContract
from sotai.errors import InvalidInput, SotaiError
from sotai.limits import GenerationParams, check_text

from .types import GenerateRequest, GenerateResult, TagsResult

Protocol = Literal["grpc", "http"]


def _module(protocol: Protocol):
    if protocol == "grpc":
        import tritonclient.grpc as module
    elif protocol == "http":
        import tritonclient.http as module
    else:
        raise InvalidInput("protocol", protocol, "must be grpc or http")
    return module


class SotaiClient:
    """`SotaiClient("127.0.0.1:8001").generate(GenerateRequest("銀髪の少女"))`."""

    def __init__(self, url: str = "127.0.0.1:8001", protocol: Protocol = "grpc", timeout_s: float = 600.0):
        self.url = url
        self.protocol = protocol
        self.timeout_s = timeout_s
        self._tc = _module(protocol)
        self._client = self._tc.InferenceServerClient(url)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "SotaiClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------
    def generate(self, request: GenerateRequest) -> GenerateResult:
        text = check_text("text", request.text)
        p = request.params.checked()
        values = {
            "TEXT": text, "NEGATIVE_PROMPT": p.negative_prompt, "STEPS": p.steps, "CFG_SCALE": p.cfg_scale,
            "WIDTH": p.width, "HEIGHT": p.height, "SEED": p.seed, "NUM_IMAGES": p.num_images,
            "SCHEDULER": p.scheduler, "RATING": p.rating,
        }
        out = self._infer(SOTAI, values)
        return GenerateResult(
            tags=json.loads(out["TAGS"][0][0]), prompt=out["PROMPT"][0][0].decode("utf-8"),
            images=[bytes(b) for b in out["IMAGE"][0]], seed=int(out["SEED_USED"][0][0]),
        )

    def candidates(self, text: str, top_k: int = 20) -> list[dict]:
        """The RAG stage alone: tag candidates with their reasons."""
        out = self._infer(RAG, {"TEXT": check_text("text", text), "TOP_K": top_k})
        return json.loads(out["CANDIDATES"][0][0])["candidates"]

    def tags(self, text: str, params: GenerationParams | None = None, top_k: int = 20) -> TagsResult:
        """RAG then Dart: the final tag list and prompt, without painting."""
        p = (params or GenerationParams()).checked()
        out = self._infer(RAG, {"TEXT": check_text("text", text), "TOP_K": top_k})
        dart = self._infer(DART, {"CANDIDATES": out["CANDIDATES"][0][0], "WIDTH": p.width, "HEIGHT": p.height,
                                  "RATING": p.rating, "SEED": p.seed})
        return TagsResult(tags=json.loads(dart["TAGS"][0][0]), prompt=dart["PROMPT"][0][0].decode("utf-8"))

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready())
        except Exception:
            return False

    # -- plumbing ------------------------------------------------------------
    def _infer(self, contract: ModelContract, values: dict) -> dict[str, np.ndarray]:
        inputs = []
        for name, value in values.items():
            t = contract.input(name)
            arr = np.array([[value.encode("utf-8") if isinstance(value, str) else value]], dtype=t.numpy_dtype)
            tensor = self._tc.InferInput(name, list(arr.shape), t.wire_dtype)
            tensor.set_data_from_numpy(arr)
            inputs.append(tensor)
        outputs = [self._tc.InferRequestedOutput(t.name) for t in contract.outputs]
        try:
            kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
            result = self._client.infer(contract.name, inputs, outputs=outputs, **kwargs)
        except self._tc.InferenceServerException as exc:
            raise _as_error(contract.name, exc) from None
        return {t.name: result.as_numpy(t.name) for t in contract.outputs}


def _as_error(model: str, exc) -> SotaiError:
    """Triton's INVALID_ARG (a validation message from our models) becomes InvalidInput again."""
    message = exc.message() if hasattr(exc, "message") else str(exc)
    status = str(exc.status() or "")
    if "INVALID_ARG" in status or "400" in status or " is invalid: " in message:
        err = InvalidInput.__new__(InvalidInput)
        SotaiError.__init__(err, message)
        err.field, err.value, err.rule = _parse_invalid(message)
        return err
    return SotaiError(f"{model}: {message} (status {status})")


def _parse_invalid(message: str) -> tuple[str, str, str]:
    head, _, rule = message.partition(" is invalid: ")
    field, _, value = head.rpartition(": ")[2].partition("=")
    return field, value, rule
