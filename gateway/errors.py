"""Errors -> HTTP: InvalidInput 422 (Triton's words), overload 429 + Retry-After, Triton down 503 +
Retry-After, the request's own timeout_s passed 504 (naming the field), client gone 499, other stage errors 502."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sotai.client import TritonUnavailable
from sotai.client.errors import DeadlineExceeded, RequestCancelled, TritonOverloaded
from sotai.errors import InvalidInput, SotaiError
from sotai.limits import TAG_MAX_CHARS, check_tags, check_text, check_timeout
from sotai.params import GENERATION_PARAMS

CLIENT_CLOSED_REQUEST = 499  # nginx's code: nobody reads it, but the access log says what happened

# The limit check of each body field, so a wrong JSON type gets the same words as a value out of range.
FIELD_CHECKS = {
    "text": lambda v: check_text("text", v),
    "tags": lambda v: check_tags("tags", v),
    "timeout_s": lambda v: check_timeout("timeout_s", v),
    **{p.name: p.check for p in GENERATION_PARAMS},
}


# The requests that take a job slot; refused by AdmissionLimit before anything else is done with them.
JOB_ROUTES = frozenset({"/v1/tags", "/v1/images", "/v1/images/stream", "/sdapi/v1/txt2img", "/sdapi/v1/img2img"})


class AdmissionLimit:
    """ASGI middleware: while every replica runs its limit of jobs, a job request is answered 429 with
    Retry-After at once, before its body is read or validated. Under a crowd of retries this keeps a
    refusal to a fraction of a millisecond of the gateway's time (through FastAPI it costs ~1-2 ms, and
    62 clients retrying together then wait behind each other). The endpoint still checks for itself."""

    def __init__(self, app, pool, retry_after_s: int):
        self.app = app
        self.pool = pool
        self.retry_after_s = retry_after_s
        limit = f"{pool.max_in_flight} jobs in flight on each of its Triton replica(s)"
        self.body = json.dumps({"detail": str(TritonOverloaded("the gateway", limit, retry_after_s))}).encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in JOB_ROUTES \
                and not self.pool.has_capacity():
            await send({"type": "http.response.start", "status": 429, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode()),
                (b"retry-after", str(self.retry_after_s).encode())]})
            await send({"type": "http.response.body", "body": self.body})
            return
        await self.app(scope, receive, send)


def error_status(exc: SotaiError) -> int:
    """The HTTP status of a project error (the same for plain answers and the SSE `error` event)."""
    if isinstance(exc, InvalidInput):
        return 422
    if isinstance(exc, TritonOverloaded):
        return 429
    if isinstance(exc, TritonUnavailable):
        return 503
    if isinstance(exc, DeadlineExceeded):
        return 504
    if isinstance(exc, RequestCancelled):
        return CLIENT_CLOSED_REQUEST
    return 502


def invalid_response(exc: InvalidInput) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": str(exc), "field": exc.field, "rule": exc.rule})


def from_validation_error(exc: RequestValidationError) -> InvalidInput:
    """The first pydantic error as an InvalidInput in sotai.limits' words."""
    error = exc.errors()[0]
    # the field's own name, without FastAPI's location prefix ("body", "query", ...)
    loc = [str(p) for p in error.get("loc", ())]
    loc = loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc
    # ("tags", 0) -> "tags[0]", as sotai.limits names list items
    field = "".join(f"[{p}]" if p.isdigit() and i else (f".{p}" if i else p) for i, p in enumerate(loc)) or "body"
    value = error.get("input")
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return InvalidInput(field, value, "is not a known field")
    if kind == "missing":
        return InvalidInput(field, None, "is required")
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        return InvalidInput("body", "<not JSON>", f"must be a JSON object ({reason})")
    if kind in ("model_attributes_type", "dict_type") or field == "body":
        return InvalidInput("body", value, "must be a JSON object")
    if len(loc) == 2 and loc[0] == "tags" and loc[1].isdigit():
        try:
            check_text(field, value, max_chars=TAG_MAX_CHARS)
        except InvalidInput as limit_error:
            return limit_error
    check = FIELD_CHECKS.get(loc[0]) if loc else None
    if check is not None and len(loc) == 1:
        try:
            check(value)
        except InvalidInput as limit_error:
            return limit_error
    return InvalidInput(field, value, error.get("msg", "is invalid").lower())


def install(app: FastAPI, retry_after_s: int, overload_retry_after_s: int = 2) -> None:
    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput):
        return invalid_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return invalid_response(from_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        # FastAPI answers a body that is not UTF-8 with a bare 400; name the field and the rule instead.
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            return invalid_response(InvalidInput("body", f"<{len(cause.object)} bytes>",
                                                 f"must be valid UTF-8 ({cause.reason} at byte {cause.start})"))
        return await http_exception_handler(request, exc)

    @app.exception_handler(TritonUnavailable)
    async def _unavailable(request: Request, exc: TritonUnavailable):
        return JSONResponse(status_code=503, content={"detail": str(exc)},
                            headers={"Retry-After": str(retry_after_s)})

    @app.exception_handler(TritonOverloaded)
    async def _overloaded(request: Request, exc: TritonOverloaded):
        return JSONResponse(status_code=429, content={"detail": str(exc)},
                            headers={"Retry-After": str(overload_retry_after_s)})

    @app.exception_handler(DeadlineExceeded)
    async def _deadline(request: Request, exc: DeadlineExceeded):
        return JSONResponse(status_code=504, content={"detail": str(exc), "field": exc.field, "rule": exc.rule})

    @app.exception_handler(SotaiError)
    async def _stage(request: Request, exc: SotaiError):
        return JSONResponse(status_code=error_status(exc), content={"detail": str(exc)})


def document_errors(app: FastAPI) -> None:
    """Document every 422 as the body the handlers above send ({detail, field, rule}), not FastAPI's
    default list of pydantic errors, so clients (and the schema fuzz test) see what really comes."""
    from .schemas import ErrorResponse

    build = app.openapi

    def openapi() -> dict:
        if getattr(app, "_errors_documented", False):
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                response = operation.get("responses", {}).get("422")
                if response is not None:
                    response["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        app._errors_documented = True
        return schema

    app.openapi = openapi
