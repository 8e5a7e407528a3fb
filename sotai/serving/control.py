"""Stopping a running diffusion job: cancellation, deadlines, and A1111's skip/interrupt.

Everything here is what the Triton diffusion adapter asks before each denoising step
(`SdxlGenerator(..., should_stop=...)`), written without Triton so it can be tested alone:

- cancelled: Triton marks a request cancelled when its gRPC call is cancelled (a client gone, the
  gateway's HTTP client gone, the call's own gRPC deadline): the job is abandoned, its slot freed.
- deadline: a request may carry a timeout (Triton's request `timeout` parameter, microseconds, set
  from the client's `timeout_s`); the loop never paints past it and the error names `timeout_s`. It
  counts from when the model takes the request; the time it waited in the queue is covered by the
  client's gRPC deadline (the same `timeout_s`), which cancels the call when it passes.
- finish: `/sdapi/v1/skip` and `/interrupt` end the image being painted early, as A1111 does: the loop
  stops and decodes the latents it has. The gateway asks the `diffusion_control` model, which leaves
  a flag file named after the job's Triton request id in a directory private to the tritonserver
  (named by its pid: every Python-backend stub is its child); the loop looks for it (one stat a step).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sotai.errors import InvalidInput, SotaiError

CONTROL_ACTIONS = ("skip", "interrupt")  # both finish the image under way; interrupt also ends the job (gateway)
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
FLAG_MAX_AGE_S = 3600.0  # a flag for a job that never ran is removed after this long


class RequestCancelled(SotaiError):
    """The request was cancelled (client gone, call cancelled): nothing more is painted for it."""

    def __init__(self, step: int, total: int):
        self.step, self.total = step, total
        super().__init__(f"cancelled: the request was cancelled before step {step + 1} of {total}; "
                         "painting stopped there")


class DeadlineExceeded(SotaiError):
    """The request's own timeout passed. Its message names the field a caller sets: `timeout_s`."""

    field = "timeout_s"

    def __init__(self, timeout_s: float, detail: str = ""):
        self.timeout_s = timeout_s
        self.rule = f"the request did not finish within its timeout of {timeout_s:g} s"
        super().__init__(f"timeout_s={timeout_s:g}: {self.rule}{detail}; send a larger timeout_s (or none), "
                         "fewer steps or a smaller size")


def check_request_id(value: str) -> str:
    if not isinstance(value, str) or not REQUEST_ID.match(value):
        raise InvalidInput("request_id", value, "must be 1..128 characters of A-Z a-z 0-9 _ . : -")
    return value


def control_dir(server_pid: int | None = None) -> Path:
    """The flag directory of one tritonserver (default: the parent of this Python-backend stub)."""
    return Path(tempfile.gettempdir()) / f"sotai-control-{server_pid or os.getppid()}"


@dataclass(frozen=True)
class ControlFlags:
    directory: Path

    def request(self, request_id: str, action: str) -> None:
        if action not in CONTROL_ACTIONS:
            raise InvalidInput("action", action, f"must be one of {', '.join(CONTROL_ACTIONS)}")
        self.directory.mkdir(mode=0o700, exist_ok=True)
        self.prune()
        (self.directory / check_request_id(request_id)).write_text(action)

    def finish_requested(self, request_id: str) -> bool:
        return bool(request_id) and REQUEST_ID.match(request_id) is not None and \
            (self.directory / request_id).exists()

    def clear(self, request_id: str) -> None:
        if request_id and REQUEST_ID.match(request_id):
            (self.directory / request_id).unlink(missing_ok=True)

    def prune(self, max_age_s: float = FLAG_MAX_AGE_S) -> None:
        now = time.time()
        for flag in self.directory.glob("*"):
            try:
                if now - flag.stat().st_mtime > max_age_s:
                    flag.unlink()
            except FileNotFoundError:
                pass


def stop_check(*, total: int, is_cancelled: Callable[[], bool], started: float, timeout_s: float = 0.0,
               flags: ControlFlags | None = None, request_id: str = "",
               clock: Callable[[], float] = time.monotonic) -> Callable[[int], "str | None"]:
    """The `should_stop` hook of one request. `started`: `clock()` when the request reached the model;
    timeout_s 0: no deadline."""
    from sotai.diffusion.pipeline import FINISH  # here: the clients that read this module's errors skip torch

    def should_stop(step: int) -> str | None:
        if is_cancelled():
            raise RequestCancelled(step, total)
        if timeout_s and clock() - started >= timeout_s:
            where = f" (stopped before step {step + 1} of {total})" if step < total else " (stopped before decoding)"
            raise DeadlineExceeded(timeout_s, where)
        if flags is not None and flags.finish_requested(request_id):
            return FINISH
        return None

    return should_stop
