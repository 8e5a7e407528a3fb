"""The Triton replicas behind the gateway: round-robin, with failover while one is down.

`SOTAI_TRITON_URL` (or `--triton-url`) may name several gRPC endpoints, comma-separated
(`triton-1:8001,triton-2:8001`): each request goes to the next replica, and a replica that could not
be reached is skipped for `retry_after_s` seconds. Failover happens only before a request produced
anything, so no half-streamed answer is ever repeated.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from sotai.client import AsyncSotaiClient, GenerateRequest, GenerateResult, Progress, TagsResult, TritonUnavailable

T = TypeVar("T")


def parse_urls(value: str | list[str] | tuple[str, ...]) -> list[str]:
    urls = value.split(",") if isinstance(value, str) else list(value)
    urls = [u.strip() for u in urls if u and u.strip()]
    if not urls:
        raise ValueError("no Triton URL given: set SOTAI_TRITON_URL or pass --triton-url HOST:PORT")
    return urls


class TritonPool:
    def __init__(self, urls: list[str], protocol: str = "grpc", timeout_s: float = 600.0, retry_after_s: float = 5.0):
        self.urls = urls
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._clients: list[AsyncSotaiClient] = []
        self._down_until: dict[str, float] = {}
        self._turn = itertools.count()

    async def start(self) -> None:
        """Create the clients in the serving event loop (grpc.aio channels belong to one loop)."""
        if not self._clients:
            self._clients = [AsyncSotaiClient(u, protocol=self.protocol, timeout_s=self.timeout_s) for u in self.urls]  # type: ignore[arg-type]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._clients), return_exceptions=True)
        self._clients = []

    def _order(self) -> list[AsyncSotaiClient]:
        """Replicas to try, starting with the next in turn; replicas marked down go last."""
        start = next(self._turn) % len(self._clients)
        ring = self._clients[start:] + self._clients[:start]
        now = time.monotonic()
        return [c for c in ring if self._down_until.get(c.url, 0) <= now] + \
               [c for c in ring if self._down_until.get(c.url, 0) > now]

    async def _with_failover(self, call: Callable[[AsyncSotaiClient], Awaitable[T]]) -> T:
        await self.start()
        error: TritonUnavailable | None = None
        for client in self._order():
            try:
                result = await call(client)
            except TritonUnavailable as exc:
                self._down_until[client.url] = time.monotonic() + self.retry_after_s
                error = exc
                continue
            self._down_until.pop(client.url, None)
            return result
        assert error is not None
        raise error

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        return await self._with_failover(lambda c: c.generate(request))

    async def tags(self, request: GenerateRequest) -> TagsResult:
        return await self._with_failover(
            lambda c: c.tags(request.text, request.params, request.top_k, tags=request.tags))

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Progress | GenerateResult]:
        await self.start()
        error: TritonUnavailable | None = None
        for client in self._order():
            started = False
            try:
                async for event in client.stream(request):
                    started = True
                    yield event
                self._down_until.pop(client.url, None)
                return
            except TritonUnavailable as exc:
                self._down_until[client.url] = time.monotonic() + self.retry_after_s
                if started:
                    raise
                error = exc
        assert error is not None
        raise error

    async def readiness(self) -> list[dict]:
        """Per replica: reachable, server ready, and the state of every model."""
        await self.start()

        async def one(client: AsyncSotaiClient) -> dict:
            try:
                models = await client.models_ready()
                server = await client.is_ready()
            except TritonUnavailable as exc:
                return {"url": client.url, "ready": False, "detail": str(exc), "models": {}}
            not_ready = sorted(name for name, ok in models.items() if not ok)
            ready = server and bool(models) and not not_ready
            entry = {"url": client.url, "ready": ready, "models": models}
            if not ready:
                entry["detail"] = f"models not ready: {', '.join(not_ready)}" if not_ready else "server not ready"
            return entry

        return list(await asyncio.gather(*(one(c) for c in self._clients)))
