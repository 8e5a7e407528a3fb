"""Safe defaults: an optional API key (constant-time check) and a request body size limit."""

from __future__ import annotations

import base64
import hmac

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Largest useful body: 2000-character text and negative prompt, 128 tags of 128 characters, as UTF-8 JSON.
MAX_BODY_BYTES = 256 * 1024
# Endpoints whose body carries a base64 image: a 2048x2048 noisy PNG is ~12 MiB, ~16 MiB as base64.
IMAGE_BODY_BYTES = 24 * 1024 * 1024
# Routes that carry an image (base64): a larger body limit on these only.
IMAGE_PATHS = ("/sdapi/v1/png-info", "/sdapi/v1/img2img", "/v1/images", "/v1/images/stream")

# Paths that stay open with an API key set: probes for orchestrators.
OPEN_PATHS = ("/healthz", "/readyz")


def presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer K`, `X-API-Key: K`, or HTTP Basic with password K (A1111 tools)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
    return request.headers.get("x-api-key")


def key_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def api_key_dependency(expected: str | None):
    """A FastAPI dependency: 401 unless the request carries the key (no-op when no key is set)."""

    async def check(request: Request) -> None:
        if expected is None or request.url.path in OPEN_PATHS:
            return
        if not key_matches(presented_key(request), expected):
            raise HTTPException(status_code=401, detail="missing or wrong API key: send `Authorization: Bearer <SOTAI_API_KEY>`",
                                headers={"WWW-Authenticate": 'Bearer realm="sotai"'})

    return check


class BodySizeLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, by Content-Length or as it arrives."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES, image_limit: int = IMAGE_BODY_BYTES):
        self.app = app
        self.limit = limit
        self.image_limit = image_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.image_limit if scope.get("path") in IMAGE_PATHS else self.limit
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._reject(send, limit)
            return
        # Read the body first (it is small by definition), so a chunked body over the limit gets a
        # clean 413 before the app sees any of it.
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > limit:
                await self._reject(send, limit)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()  # after the body: disconnect notices

        await self.app(scope, replayed, send)

    async def _reject(self, send: Send, limit: int) -> None:
        body = f'{{"detail":"request body is larger than {limit} bytes"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

