"""The Triton replicas behind the gateway: round-robin, with failover while one is down.

`SOTAI_TRITON_URL` (or `--triton-url`) may name several gRPC endpoints, comma-separated
(`triton-1:8001,triton-2:8001`): each request goes to the next replica, and a replica that could not
be reached is skipped for `retry_after_s` seconds. Failover happens only before a request produced
anything, so no half-streamed answer is ever repeated.

Overload: each replica runs at most `max_in_flight` jobs from this gateway at once; a job past that
on every replica is refused at once (TritonOverloaded, 429 with Retry-After), never queued here. A
replica whose own bounded queue is full is skipped the same way. A job's slot is given back the moment
it ends, whether it finished, failed or was cancelled (its HTTP client went away).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from sotai.client import AsyncSotaiClient, GenerateRequest, GenerateResult, Progress, TagsResult, TritonUnavailable
from sotai.client.errors import TritonOverloaded

T = TypeVar("T")


def parse_urls(value: str | list[str] | tuple[str, ...]) -> list[str]:
    urls = value.split(",") if isinstance(value, str) else list(value)
    urls = [u.strip() for u in urls if u and u.strip()]
    if not urls:
        raise ValueError("no Triton URL given: set SOTAI_TRITON_URL or pass --triton-url HOST:PORT")
    return urls


class TritonPool:
    def __init__(self, urls: list[str], protocol: str = "grpc", timeout_s: float = 600.0, retry_after_s: float = 5.0,
                 max_in_flight: int = 8, overload_retry_after_s: float = 2.0):
        self.urls = urls
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.max_in_flight = max_in_flight
        self.overload_retry_after_s = overload_retry_after_s
        self._clients: list[AsyncSotaiClient] = []
        self._down_until: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}
        self._painting: dict[str, AsyncSotaiClient] = {}  # request id of a job under way -> its replica
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

    def in_flight(self) -> dict[str, int]:
        """Jobs under way per replica (a cancelled job is gone from here at once)."""
        return {c.url: self._in_flight.get(c.url, 0) for c in self._clients}

    def has_capacity(self) -> bool:
        """A replica could take one more job from here now (before start: assume so)."""
        return not self._clients or any(self._has_slot(c) for c in self._clients)

    def _has_slot(self, client: AsyncSotaiClient) -> bool:
        return self._in_flight.get(client.url, 0) < self.max_in_flight

    @contextlib.contextmanager
    def _slot(self, client: AsyncSotaiClient, request_id: str = ""):
        self._in_flight[client.url] = self._in_flight.get(client.url, 0) + 1
        if request_id:
            self._painting[request_id] = client
        try:
            yield
        finally:
            self._in_flight[client.url] -= 1
            if request_id:
                self._painting.pop(request_id, None)

    def _overloaded(self, busy: TritonOverloaded | None) -> TritonOverloaded:
        """Every replica is at its limit here, or its own queue is full (`busy`: Triton said so)."""
        if busy is not None:
            return TritonOverloaded(busy.where, "its queue is full", self.overload_retry_after_s)
        detail = f"{self.max_in_flight} jobs in flight on each of its {len(self._clients)} Triton replica(s)"
        return TritonOverloaded("the gateway", detail, self.overload_retry_after_s)

    async def _with_failover(self, call: Callable[[AsyncSotaiClient], Awaitable[T]], request_id: str = "") -> T:
        await self.start()
        error: TritonUnavailable | None = None
        busy: TritonOverloaded | None = None
        for client in self._order():
            if not self._has_slot(client):
                continue
            try:
                with self._slot(client, request_id):
                    result = await call(client)
            except TritonUnavailable as exc:
                self._down_until[client.url] = time.monotonic() + self.retry_after_s
                error = exc
                continue
            except TritonOverloaded as exc:  # its queue is full: nothing started there, try the next
                busy = exc
                continue
            self._down_until.pop(client.url, None)
            return result
        if error is not None and busy is None:
            raise error
        raise self._overloaded(busy)

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        # cancellable: the stages one by one, so a client that goes away stops the painting.
        return await self._with_failover(lambda c: c.generate(request, cancellable=True), request.request_id)

    async def tags(self, request: GenerateRequest) -> TagsResult:
        return await self._with_failover(
            lambda c: c.tags(request.text, request.params, request.top_k, tags=request.tags))

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Progress | GenerateResult]:
        await self.start()
        error: TritonUnavailable | None = None
        busy: TritonOverloaded | None = None
        for client in self._order():
            if not self._has_slot(client):
                continue
            started = False
            try:
                with self._slot(client, request.request_id):
                    async for event in client.stream(request, cancellable=True):
                        started = True
                        yield event
                self._down_until.pop(client.url, None)
                return
            except TritonUnavailable as exc:
                self._down_until[client.url] = time.monotonic() + self.retry_after_s
                if started:
                    raise
                error = exc
            except TritonOverloaded as exc:
                if started:  # a later stage's queue was full: the answer has begun, say so as it is
                    raise
                busy = exc
        if error is not None and busy is None:
            raise error
        raise self._overloaded(busy)

    async def control(self, request_id: str, action: str) -> bool:
        """Ask the job `request_id` to finish its image now (skip | interrupt); False if it is not running."""
        client = self._painting.get(request_id)
        if client is None:
            return False
        await client.control(request_id, action)
        return True

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
