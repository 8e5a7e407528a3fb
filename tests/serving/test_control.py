"""The stop hook of the diffusion loop and the client's reading of Triton's overload/timeout errors,
without Triton (the end-to-end behaviour is in tests/reliability/test_overload.py)."""

from __future__ import annotations

import pytest

from sotai.client.errors import DeadlineExceeded, RequestCancelled, TritonOverloaded, TritonUnavailable, from_triton
from sotai.errors import InvalidInput
from sotai.serving import control
from sotai.serving.control import ControlFlags, stop_check


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stop_check_goes_on_until_told_otherwise(tmp_path):
    flags = ControlFlags(tmp_path / "flags")
    check = stop_check(total=10, is_cancelled=lambda: False, started=0.0, flags=flags, request_id="job-1")
    assert [check(i) for i in range(11)] == [None] * 11


def test_a_cancelled_request_raises_naming_the_step():
    cancelled = {"now": False}
    check = stop_check(total=20, is_cancelled=lambda: cancelled["now"], started=0.0)
    assert check(0) is None
    cancelled["now"] = True
    with pytest.raises(control.RequestCancelled, match="before step 5 of 20"):
        check(4)


def test_the_deadline_is_the_requests_timeout_from_its_start():
    clock = Clock()
    check = stop_check(total=20, is_cancelled=lambda: False, started=clock(), timeout_s=1.5, clock=clock)
    clock.now += 1.4
    assert check(3) is None
    clock.now += 0.1
    with pytest.raises(control.DeadlineExceeded, match=r"timeout_s=1\.5: .*before step 5 of 20"):
        check(4)
    with pytest.raises(control.DeadlineExceeded, match="before decoding"):
        check(20)


def test_skip_flags_finish_only_their_own_request(tmp_path):
    flags = ControlFlags(tmp_path / "flags")
    mine = stop_check(total=5, is_cancelled=lambda: False, started=0.0, flags=flags, request_id="job-1")
    other = stop_check(total=5, is_cancelled=lambda: False, started=0.0, flags=flags, request_id="job-2")
    flags.request("job-1", "skip")
    assert mine(2) == "finish" and other(2) is None
    flags.clear("job-1")
    assert mine(3) is None


def test_control_refuses_bad_ids_and_actions(tmp_path):
    flags = ControlFlags(tmp_path / "flags")
    with pytest.raises(InvalidInput, match="request_id"):
        flags.request("../../etc/passwd", "skip")
    with pytest.raises(InvalidInput, match="action"):
        flags.request("job-1", "explode")


class TritonError(Exception):
    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self._message, self._status = message, status

    def message(self):
        return self._message

    def status(self):
        return self._status


@pytest.mark.parametrize(("message", "status", "kind"), [
    ("[request id: <id_unknown>] Exceeds maximum queue size", "StatusCode.UNAVAILABLE", TritonOverloaded),
    ("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED", DeadlineExceeded),
    ("timeout_s=1.5: the request did not finish within its timeout of 1.5 s", "StatusCode.CANCELLED", DeadlineExceeded),
    ("Request timeout expired", "StatusCode.UNAVAILABLE", DeadlineExceeded),
    ("Locally cancelled by application!", "StatusCode.CANCELLED", RequestCancelled),
    ("failed to connect to all addresses", "StatusCode.UNAVAILABLE", TritonUnavailable),
])
def test_the_client_reads_overload_deadline_and_cancel_apart(message, status, kind):
    error = from_triton("diffusion", "127.0.0.1:8001", TritonError(message, status), timeout_s=1.5)
    assert type(error) is kind
    if kind is DeadlineExceeded:
        assert error.field == "timeout_s" and str(error).startswith("timeout_s=1.5:")
