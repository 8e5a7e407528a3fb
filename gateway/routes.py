"""/v1/tags, /v1/images, /v1/images/stream (server-sent events), /healthz, /readyz."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from sotai.client import GenerateResult, Progress, TritonUnavailable
from sotai.errors import InvalidInput, SotaiError

from .errors import invalid_response
from .schemas import ErrorResponse, GenerationBody, ImagesResponse, TagsResponse, progress_event
from .state import GatewayState

ERRORS = {
    422: {"model": ErrorResponse, "description": "a field is outside its limit (the message names field and limit)"},
    503: {"model": ErrorResponse, "description": "Triton is not reachable or not ready; retry after Retry-After seconds"},
}

router = APIRouter()
probes = APIRouter()


def state(request: Request) -> GatewayState:
    return request.app.state.sotai


@router.post("/v1/tags", response_model=TagsResponse, responses=ERRORS, tags=["v1"],
             summary="Japanese text (or tags) -> Danbooru tags with reasons and the final prompt")
async def tags(body: GenerationBody, request: Request) -> TagsResponse:
    s = state(request)
    return TagsResponse.of(await s.pool.tags(body.to_request(s.settings)))


@router.post("/v1/images", response_model=ImagesResponse, responses=ERRORS, tags=["v1"],
             summary="Japanese text (or tags) -> tags, prompt and PNG images (base64)")
async def images(body: GenerationBody, request: Request) -> ImagesResponse:
    s = state(request)
    return ImagesResponse.of(await s.pool.generate(body.to_request(s.settings)))


@router.post("/v1/images/stream", responses={**ERRORS, 200: {
    "content": {"text/event-stream": {}},
    "description": "events `progress` {stage, step, total, fraction, preview?, tags?, prompt?}, then `result` "
                   "(the /v1/images body) or `error` {status, detail, field?, rule?}"}}, tags=["v1"],
    summary="/v1/images with live progress as server-sent events")
async def images_stream(body: GenerationBody, request: Request):
    s = state(request)
    gen = body.to_request(s.settings)  # a bad field is a plain 422, before the stream opens

    async def events():
        with s.board.job(gen) as job:
            try:
                async for event in s.pool.stream(gen):
                    if isinstance(event, Progress):
                        job.update(event)
                        yield {"event": "progress", "data": json.dumps(progress_event(event), ensure_ascii=False)}
                    elif isinstance(event, GenerateResult):
                        yield {"event": "result", "data": ImagesResponse.of(event).model_dump_json()}
            except InvalidInput as exc:
                yield {"event": "error", "data": json.dumps({"status": 422, "detail": str(exc), "field": exc.field,
                                                             "rule": exc.rule}, ensure_ascii=False)}
            except SotaiError as exc:
                status = 503 if isinstance(exc, TritonUnavailable) else 502
                yield {"event": "error", "data": json.dumps({"status": status, "detail": str(exc)}, ensure_ascii=False)}

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
