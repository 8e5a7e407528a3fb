"""What the gateway holds while it runs: settings, the Triton pool, and the jobs in progress."""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from dataclasses import dataclass, field, replace

from sotai.client import GenerateRequest, Progress
from sotai.settings import Settings

from .pool import TritonPool


@dataclass
class Job:
    id: int
    started: float
    steps: int
    latest: Progress | None = None
    preview: bytes = b""
    token: str = field(default_factory=lambda: f"sotai-{uuid.uuid4().hex[:16]}")
    image: int = 0  # which painting call of the job runs (A1111's n_iter)
    interrupted: bool = False  # /sdapi/v1/interrupt: no further images
    skipped: bool = False  # /sdapi/v1/skip was asked for the image under way

    @property
    def request_id(self) -> str:
        """Triton request id of the painting call under way: skip/interrupt name it."""
        return f"{self.token}-{self.image}"

    def painting(self, request: GenerateRequest, image: int = 0) -> GenerateRequest:
        """The request of the job's image number `image`, named so skip/interrupt can reach it."""
        self.image, self.skipped = image, False
        return replace(request, request_id=self.request_id)

    def update(self, event: Progress) -> None:
        self.latest = event
        if event.preview:
            self.preview = event.preview

    @property
    def fraction(self) -> float:
        return self.latest.fraction if self.latest else 0.0


class ProgressBoard:
    """Jobs in flight, for A1111's /sdapi/v1/progress (which reports the one job it runs)."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)

    @contextlib.contextmanager
    def job(self, request: GenerateRequest):
        job = Job(next(self._ids), time.monotonic(), request.params.steps)
        self.jobs[job.id] = job
        try:
            yield job
        finally:
            self.jobs.pop(job.id, None)

    def current(self) -> Job | None:
        """The oldest job still running (A1111 runs one at a time; the rest wait behind it)."""
        return min(self.jobs.values(), key=lambda j: j.id) if self.jobs else None


@dataclass
class GatewayState:
    settings: Settings
    pool: TritonPool
    retry_after_s: int = 5
    board: ProgressBoard = field(default_factory=ProgressBoard)
    a1111_options: dict = field(default_factory=dict)
