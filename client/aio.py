"""asyncio client: the same plans as `SotaiClient`, over tritonclient's grpc.aio / http.aio.

One `AsyncSotaiClient` serves many concurrent requests (the gateway holds one per Triton URL);
every streamed call is its own gRPC stream.
"""

from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable, Sequence

import numpy as np

from sotai.errors import SotaiError
from sotai.params import GenerationParams

from .catalog import Catalog, ModelInfo, config_kwargs, pipeline_models, repository_states
from .errors import MapsTritonErrors, from_triton
from .plans import (Call, Plan, StreamedOutputs, candidates_call, candidates_from, generate_plan, outputs_of,
                    tags_plan, tags_request)
from .sync import Deadline, Protocol, grpc_channel_args, transport
from .types import GenerateRequest, GenerateResult, Progress, TagsResult

AsyncProgressCallback = Callable[[Progress], "Awaitable[None] | None"]


class AsyncSotaiClient(MapsTritonErrors):
    """`async with AsyncSotaiClient(url) as c: result = await c.generate(GenerateRequest("夜の桜"))`."""

    def __init__(self, url: str = "127.0.0.1:8001", protocol: Protocol = "grpc", timeout_s: float = 600.0):
        self.url = url
        self.protocol = protocol
        self.timeout_s = timeout_s
        self._tc = transport(protocol)  # InferInput and friends are shared with the aio modules
        if protocol == "grpc":
            import tritonclient.grpc.aio as aio

            import grpc

            self._client = aio.InferenceServerClient(url, channel_args=grpc_channel_args())
            self._transport_errors: tuple = (OSError, grpc.RpcError)
        else:
            import aiohttp
            import tritonclient.http.aio as aio

            self._client = aio.InferenceServerClient(url, conn_timeout=timeout_s)
            self._transport_errors = (OSError, aiohttp.ClientError)
        self._aio = aio
        self._catalog: Catalog | None = None

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> "AsyncSotaiClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- calls ---------------------------------------------------------------
    async def generate(self, request: GenerateRequest, on_progress: AsyncProgressCallback | None = None, *,
                       cancellable: bool = False) -> GenerateResult:
        """`cancellable`: cancelling the awaiting task stops the painting in Triton (see plans.py)."""
        result = None
        async for event in self.stream(request, progress=on_progress is not None, cancellable=cancellable):
            if isinstance(event, Progress):
                maybe = on_progress(event)  # type: ignore[misc]
                if maybe is not None:
                    await maybe
            else:
                result = event
        return result  # type: ignore[return-value]

    async def stream(self, request: GenerateRequest, *, progress: bool = True,
                     cancellable: bool = False) -> AsyncIterator[Progress | GenerateResult]:
        """Progress events as they happen, then the GenerateResult."""
        plan = generate_plan(request, await self.catalog(), progress=progress, streaming=self.protocol == "grpc",
                             cancellable=cancellable)
        async for event in self._run(plan, Deadline.start(request.checked().timeout_s)):
            yield event

    async def tags(self, text: str = "", params: GenerationParams | None = None, top_k: int = 20, *,
                   tags: Sequence[str] = ()) -> TagsResult:
        result = None
        async for event in self._run(tags_plan(tags_request(text, params, top_k, tags), await self.catalog())):
            result = event
        return result  # type: ignore[return-value]

    async def candidates(self, text: str, top_k: int = 20) -> list[dict]:
        return candidates_from(await self._unary(candidates_call(text, top_k)))

    async def is_ready(self) -> bool:
        try:
            return bool(await self._client.is_server_ready())
        except Exception:
            return False

    async def models_ready(self) -> dict[str, bool]:
        try:
            index = await self._client.get_model_repository_index(**config_kwargs(self.protocol))
        except (self._aio.InferenceServerException, *self._transport_errors) as exc:
            raise from_triton("repository", self.url, exc) from None
        return repository_states(index)

    async def catalog(self, refresh: bool = False) -> Catalog:
        if self._catalog is None or refresh:
            models = {}
            for name in pipeline_models(await self.models_ready(), self.url):
                try:
                    models[name] = ModelInfo.from_config(
                        await self._client.get_model_config(name, **config_kwargs(self.protocol)))
                except (self._aio.InferenceServerException, *self._transport_errors) as exc:
                    raise from_triton(name, self.url, exc) from None
            self._catalog = Catalog(models)
        return self._catalog

    # -- plumbing ------------------------------------------------------------
    async def control(self, request_id: str, action: str) -> None:
        """Ask the running painting call `request_id` to finish its image now (action skip | interrupt)."""
        await self._unary(Call("diffusion_control", {"REQUEST_ID": request_id, "ACTION": action}))

    async def _run(self, plan: Plan, deadline: Deadline = Deadline(None)) -> AsyncIterator:
        try:
            item = next(plan)
            while True:
                if isinstance(item, Progress):
                    yield item
                    item = next(plan)
                    continue
                if item.stream:
                    outputs = None
                    async for event in self._streamed(item, deadline):
                        if isinstance(event, Progress):
                            yield event
                        else:
                            outputs = event
                else:
                    outputs = await self._unary(item, deadline)
                item = plan.send(outputs)
        except StopIteration as stop:
            yield stop.value

    async def _unary(self, call: Call, deadline: Deadline = Deadline(None)) -> dict[str, np.ndarray]:
        info = (await self.catalog()).get(call.model)
        inputs = info.encode(self._tc, call.values, call.defaults)
        seconds, micros = deadline.left(call.model, self.timeout_s)
        try:
            kwargs = {"client_timeout": seconds} if self.protocol == "grpc" else {}
            result = await self._client.infer(call.model, inputs, request_id=call.request_id, timeout=micros, **kwargs)
        except (self._aio.InferenceServerException, *self._transport_errors) as exc:
            raise self._error(call.model, exc, deadline.timeout_s) from None
        return outputs_of(result, info.outputs)

    async def _streamed(self, call: Call, deadline: Deadline = Deadline(None)) -> AsyncIterator:
        if self.protocol != "grpc":
            raise SotaiError(f"`{call.model}` streams its responses, which needs gRPC: use protocol='grpc'")
        info = (await self.catalog()).get(call.model)
        inputs = info.encode(self._tc, call.values, call.defaults)
        seconds, micros = deadline.left(call.model, self.timeout_s)

        async def one_request():
            yield {"model_name": call.model, "inputs": inputs, "request_id": call.request_id, "timeout": micros}

        # The request side closes after one request; Triton ends the stream after the model's final
        # response, so the loop ends without asking for an empty final response.
        outputs = StreamedOutputs(call.model)
        responses = None
        finished = False
        try:
            responses = self._client.stream_infer(one_request(), stream_timeout=seconds)
            async for result, error in responses:
                if error is not None:
                    raise self._error(call.model, error, deadline.timeout_s)
                event = outputs.add(result)
                if event is not None:
                    yield event
            finished = True
        except (self._aio.InferenceServerException, *self._transport_errors) as exc:
            raise self._error(call.model, exc, deadline.timeout_s) from None
        finally:
            if not finished and responses is not None:
                # Left early (the caller cancelled, or closed this generator): cancel the call, so Triton
                # cancels the request and the loop stops at its next step.
                responses.cancel()
        yield outputs.final()
