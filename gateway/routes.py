"""/v1/tags, /v1/images, /v1/images/stream (server-sent events), /healthz, /readyz."""

from __future__ import annotations

import asyncio
import json
from typing import Awaitable, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from sotai.client import GenerateResult, Progress, TritonUnavailable
from sotai.client.errors import DeadlineExceeded, RequestCancelled, TritonOverloaded
from sotai.errors import InvalidInput, SotaiError

from .errors import error_status, invalid_response
from .schemas import ErrorResponse, GenerationBody, ImagesResponse, TagsResponse, progress_event
from .state import GatewayState

ERRORS = {
    422: {"model": ErrorResponse, "description": "a field is outside its limit (the message names field and limit)"},
    429: {"model": ErrorResponse, "description": "too many jobs in flight (this gateway's limit per replica, or "
                                                 "Triton's queue): nothing was started; retry after Retry-After seconds"},
    503: {"model": ErrorResponse, "description": "Triton is not reachable or not ready; retry after Retry-After seconds"},
    504: {"model": ErrorResponse, "description": "the request's own `timeout_s` passed: painting was stopped"},
}
T = TypeVar("T")

router = APIRouter()
probes = APIRouter()


def state(request: Request) -> GatewayState:
    return request.app.state.sotai


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`, cancelled the moment the HTTP client goes away: Triton then stops painting for nobody and
    the job's slot is free at once. (Starlette does not cancel a plain endpoint when its client leaves.)"""
    task = asyncio.ensure_future(work)

    async def client_gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(client_gone())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # a no-op when it is done; else the client left (or this endpoint was cancelled)
    if task in done:
        return task.result()
    await asyncio.gather(task, return_exceptions=True)
    raise RequestCancelled("the HTTP client went away: the job was cancelled")


@router.post("/v1/tags", response_model=TagsResponse, responses=ERRORS, tags=["v1"],
             summary="Japanese text (or tags) -> Danbooru tags with reasons and the final prompt")
async def tags(body: GenerationBody, request: Request) -> TagsResponse:
    s = state(request)
    return TagsResponse.of(await unless_disconnected(request, s.pool.tags(body.to_request(s.settings))))


@router.post("/v1/images", response_model=ImagesResponse, responses=ERRORS, tags=["v1"],
             summary="Japanese text (or tags) -> tags, prompt and PNG images (base64)")
async def images(body: GenerationBody, request: Request) -> ImagesResponse:
    s = state(request)
    gen = body.to_request(s.settings)
    with s.board.job(gen) as job:
        return ImagesResponse.of(await unless_disconnected(request, s.pool.generate(job.painting(gen))))


@router.post("/v1/images/stream", responses={**ERRORS, 200: {
    "content": {"text/event-stream": {}},
    "description": "events `progress` {stage, step, total, fraction, preview?, tags?, prompt?}, then `result` "
                   "(the /v1/images body) or `error` {status, detail, field?, rule?}"}}, tags=["v1"],
    summary="/v1/images with live progress as server-sent events")
async def images_stream(body: GenerationBody, request: Request):
    s = state(request)
    gen = body.to_request(s.settings)  # a bad field is a plain 422, before the stream opens

    async def events():
        # A client that goes away: sse_starlette cancels this generator, which cancels the Triton call.
        with s.board.job(gen) as job:
            try:
                async for event in s.pool.stream(job.painting(gen)):
                    if isinstance(event, Progress):
                        job.update(event)
                        yield {"event": "progress", "data": json.dumps(progress_event(event), ensure_ascii=False)}
                    elif isinstance(event, GenerateResult):
                        yield {"event": "result", "data": ImagesResponse.of(event).model_dump_json()}
            except InvalidInput as exc:
                yield {"event": "error", "data": json.dumps({"status": 422, "detail": str(exc), "field": exc.field,
                                                             "rule": exc.rule}, ensure_ascii=False)}
            except SotaiError as exc:
                data = {"status": error_status(exc), "detail": str(exc)}
                if isinstance(exc, DeadlineExceeded):
                    data.update(field=exc.field, rule=exc.rule)
                if isinstance(exc, TritonOverloaded):
                    data["retry_after"] = s.settings.overload_retry_after_s
                yield {"event": "error", "data": json.dumps(data, ensure_ascii=False)}

    return EventSourceResponse(events(), ping=15)


@probes.get("/healthz", tags=["probes"], summary="the gateway process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@probes.get("/readyz", tags=["probes"], summary="Triton and every model are ready (on at least one replica)",
            responses={503: {"description": "not ready; see `triton` for each replica"}})
async def readyz(request: Request):
    s = state(request)
    replicas = await s.pool.readiness()
    ready = any(r["ready"] for r in replicas)
    body = {"ready": ready, "triton": replicas}
    if ready:
        return body
    return JSONResponse(status_code=503, content=body, headers={"Retry-After": str(s.retry_after_s)})


__all__ = ["router", "probes", "invalid_response"]
