"""Synchronous client over tritonclient (gRPC by default, HTTP/REST with protocol="http")."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from sotai.errors import InvalidInput, SotaiError
from sotai.params import GenerationParams

from .catalog import Catalog, ModelInfo, config_kwargs, pipeline_models, repository_states
from .errors import DeadlineExceeded, MapsTritonErrors, from_triton
from .plans import (Call, Plan, StreamedOutputs, candidates_call, candidates_from, generate_plan, outputs_of,
                    tags_plan, tags_request)
from .types import GenerateRequest, GenerateResult, Progress, TagsResult

Protocol = Literal["grpc", "http"]
ProgressCallback = Callable[[Progress], None]


def transport(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as module
    elif protocol == "http":
        import tritonclient.http as module
    else:
        raise InvalidInput("protocol", protocol, "must be grpc or http")
    return module


def grpc_channel_args() -> list[tuple[str, int]]:
    """tritonclient's message limits; quick reconnects (after Triton restarts, the next call within
    about a second finds it again: gRPC's default backoff grows to two minutes); round-robin balancing."""
    from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

    return [("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.initial_reconnect_backoff_ms", 250), ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # A `dns:///name:port` URL that resolves to several Triton replicas spreads calls over all of them.
            ("grpc.lb_policy_name", "round_robin")]


@dataclass(frozen=True)
class Deadline:
    """A request's `timeout_s`, shared by its calls: each gets what is left, as its gRPC deadline (which
    cancels the call in Triton) and as Triton's request `timeout` (microseconds; the diffusion loop checks it)."""

    timeout_s: float | None
    at: float | None = None

    @classmethod
    def start(cls, timeout_s: float | None) -> "Deadline":
        return cls(timeout_s, None if timeout_s is None else time.monotonic() + timeout_s)

    def left(self, model: str, client_timeout_s: float) -> tuple[float, int | None]:
        """(seconds for the call's gRPC deadline, Triton timeout in microseconds or None)."""
        if self.at is None:
            return client_timeout_s, None
        left = self.at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(self.timeout_s, f"passed before `{model}` was called")
        return min(client_timeout_s, left), max(1, int(left * 1e6))


def run_events(plan: Plan, call: Callable[[Call], Iterator]) -> Iterator:
    """Drive a plan: yield its Progress events (and the call's), then the result."""
    try:
        item = next(plan)
        while True:
            if isinstance(item, Progress):
                yield item
                item = next(plan)
                continue
            outputs = None
            for event in call(item):
                if isinstance(event, Progress):
                    yield event
                else:
                    outputs = event
            item = plan.send(outputs)
    except StopIteration as stop:
        yield stop.value


class SotaiClient(MapsTritonErrors):
    """`SotaiClient("127.0.0.1:8001").generate(GenerateRequest("銀髪の少女"))`.

    Thread-safe for unary calls; each streamed call opens its own gRPC stream.
    """

    def __init__(self, url: str = "127.0.0.1:8001", protocol: Protocol = "grpc", timeout_s: float = 600.0):
        self.url = url
        self.protocol = protocol
        self.timeout_s = timeout_s
        self._tc = transport(protocol)
        kwargs = {"channel_args": grpc_channel_args()} if protocol == "grpc" else {
            "concurrency": 8, "network_timeout": timeout_s, "connection_timeout": 10.0}
        self._client = self._tc.InferenceServerClient(url, **kwargs)
        self._catalog: Catalog | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "SotaiClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------
    def generate(self, request: GenerateRequest, on_progress: ProgressCallback | None = None) -> GenerateResult:
        """text/tags/prompt -> tags, prompt and PNG images. `on_progress` gets stage and step events."""
        result = None
        for event in self.stream(request, progress=on_progress is not None):
            if isinstance(event, Progress):
                on_progress(event)  # type: ignore[misc]
            else:
                result = event
        return result  # type: ignore[return-value]

    def stream(self, request: GenerateRequest, *, progress: bool = True) -> Iterator[Progress | GenerateResult]:
        """Progress events as they happen, then the GenerateResult."""
        plan = generate_plan(request, self.catalog(), progress=progress, streaming=self.protocol == "grpc")
        deadline = Deadline.start(request.checked().timeout_s)
        return run_events(plan, lambda call: self._call(call, deadline))

    def tags(self, text: str = "", params: GenerationParams | None = None, top_k: int = 20, *,
             tags: Sequence[str] = ()) -> TagsResult:
        """RAG then Dart (or Dart alone for given `tags`): the final tag list and prompt, without painting."""
        *_, result = run_events(tags_plan(tags_request(text, params, top_k, tags), self.catalog()), self._call)
        return result

    def candidates(self, text: str, top_k: int = 20) -> list[dict]:
        """The RAG stage alone: tag candidates with their reasons."""
        return candidates_from(self._unary(candidates_call(text, top_k)))

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready())
        except Exception:
            return False

    def models_ready(self) -> dict[str, bool]:
        """Every model in the server's repository -> READY or not (TritonUnavailable when unreachable)."""
        try:
            index = self._client.get_model_repository_index(**config_kwargs(self.protocol))
        except (self._tc.InferenceServerException, OSError) as exc:
            raise from_triton("repository", self.url, exc) from None
        return repository_states(index)

    def catalog(self, refresh: bool = False) -> Catalog:
        """The pipeline models the server serves (read once, then cached)."""
        if self._catalog is None or refresh:
            models = {}
            for name in pipeline_models(self.models_ready(), self.url):
                try:
                    models[name] = ModelInfo.from_config(
                        self._client.get_model_config(name, **config_kwargs(self.protocol)))
                except (self._tc.InferenceServerException, OSError) as exc:
                    raise from_triton(name, self.url, exc) from None
            self._catalog = Catalog(models)
        return self._catalog

    # -- plumbing ------------------------------------------------------------
    def _call(self, call: Call, deadline: Deadline = Deadline(None)) -> Iterator:
        if call.stream:
            yield from self._streamed(call, deadline)
        else:
            yield self._unary(call, deadline)

    def _unary(self, call: Call, deadline: Deadline = Deadline(None)) -> dict[str, np.ndarray]:
        info = self.catalog().get(call.model)
        inputs = info.encode(self._tc, call.values, call.defaults)
        seconds, micros = deadline.left(call.model, self.timeout_s)
        try:
            kwargs = {"client_timeout": seconds} if self.protocol == "grpc" else {}
            result = self._client.infer(call.model, inputs, request_id=call.request_id, timeout=micros, **kwargs)
        except (self._tc.InferenceServerException, OSError) as exc:
            raise self._error(call.model, exc, deadline.timeout_s) from None
        return outputs_of(result, info.outputs)

    def _streamed(self, call: Call, deadline: Deadline = Deadline(None)) -> Iterator:
        """A decoupled model over a gRPC stream: Progress per response, then the merged outputs."""
        if self.protocol != "grpc":
            raise SotaiError(f"`{call.model}` streams its responses, which needs gRPC: use protocol='grpc'")
        info = self.catalog().get(call.model)
        inputs = info.encode(self._tc, call.values, call.defaults)
        seconds, micros = deadline.left(call.model, self.timeout_s)
        responses: queue.Queue = queue.Queue()
        # tritonclient allows one stream per client object: a private one keeps this call thread-safe.
        client = self._tc.InferenceServerClient(self.url, channel_args=grpc_channel_args())
        finished = False
        try:
            client.start_stream(callback=lambda result, error: responses.put((result, error)),
                                stream_timeout=seconds)
            client.async_stream_infer(call.model, inputs, request_id=call.request_id, timeout=micros,
                                      enable_empty_final_response=True)
            outputs = StreamedOutputs(call.model)
            while True:
                try:
                    result, error = responses.get(timeout=seconds)
                except queue.Empty:
                    if deadline.timeout_s is not None:
                        raise DeadlineExceeded(deadline.timeout_s, f"{call.model}: no answer in time") from None
                    raise SotaiError(f"{call.model}: no response for {self.timeout_s:.0f} s") from None
                if error is not None:
                    raise self._error(call.model, error, deadline.timeout_s)
                event = outputs.add(result)
                if event is not None:
                    yield event
                final = result.get_response().parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    finished = True
                    break
        finally:
            # Left early (an error, Ctrl-C, the caller closed this generator): cancel, so the loop stops.
            client.stop_stream(cancel_requests=not finished)
            client.close()
        yield outputs.final()
