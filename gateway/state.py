"""What the gateway holds while it runs: settings, the Triton pool, and the jobs in progress."""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass, field

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
