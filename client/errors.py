"""Client-side errors, and Triton's error messages turned back into the project's errors."""

from __future__ import annotations

import re

from sotai.errors import InvalidInput, SotaiError


class TritonUnavailable(SotaiError, ConnectionError):
    """Triton cannot be reached, or is not ready (starting, restarting). The gateway answers 503."""

    def __init__(self, url: str, detail: str):
        self.url = url
        super().__init__(f"Triton at {url} is not available ({detail}): start it with `make serve` "
                         f"(or `docker compose up`), then retry")


class TritonOverloaded(SotaiError):
    """Too much work queued: Triton's bounded queue for a model is full, or the gateway already runs its
    limit of jobs on every replica. Nothing was painted; retry after `retry_after_s`. The gateway: 429."""

    def __init__(self, where: str, detail: str, retry_after_s: float | None = None):
        self.where = where
        self.retry_after_s = retry_after_s
        later = f"after {retry_after_s:g} s" if retry_after_s else "in a moment"
        super().__init__(f"{where} is busy ({detail}): nothing was started for this request; retry {later}")


class DeadlineExceeded(SotaiError):
    """The request's `timeout_s` passed before it finished: Triton stopped painting. The gateway: 504."""

    field = "timeout_s"

    def __init__(self, timeout_s: float | None, detail: str):
        self.timeout_s = timeout_s
        self.rule = f"the request did not finish within its timeout of {timeout_s:g} s" if timeout_s else \
            "the request did not finish within its timeout"
        shown = f"{timeout_s:g}" if timeout_s else "?"
        super().__init__(f"timeout_s={shown}: {self.rule} ({detail}); send a larger timeout_s (or none), fewer "
                         "steps or a smaller size")


class RequestCancelled(SotaiError):
    """The call was cancelled (the caller went away, or cancelled it): Triton stopped painting."""


# Triton's bounded queue: "Exceeds maximum queue size" (status UNAVAILABLE, so this is read first).
_OVERLOADED = ("Exceeds maximum queue size", "StatusCode.RESOURCE_EXHAUSTED")
# The gRPC deadline, Triton dropping a queued request past its timeout, or the diffusion loop's own check.
_DEADLINE = ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", "Request timeout expired", "timeout_s=")
_CANCELLED = ("StatusCode.CANCELLED", "cancelled: ")

# A stage's InvalidInput, as Triton relays it: "[StatusCode.INVALID_ARGUMENT] in ensemble 'sotai', steps=0
# is invalid: must be in 1..100". The field is the last `name=` before " is invalid: ".
_INVALID = re.compile(r"(?P<field>[A-Za-z_][\w.\[\]]*)=(?P<value>.*?) is invalid: (?P<rule>.*)$", re.S)
_UNAVAILABLE = ("StatusCode.UNAVAILABLE", "failed to connect", "Connection refused", "connect call failed",
                "Cannot connect", "Server disconnected", "Socket closed", "Connection reset",
                # Triton is up but (re)loading its models: the same answer, retry shortly.
                "Request for unknown model", "is not ready", "not found, or not ready")


def invalid_input_from(message: str) -> InvalidInput | None:
    """The InvalidInput a stage raised, with the stage's own words as its message (no Triton prefix)."""
    match = None
    for match in _INVALID.finditer(message):
        pass
    if match is None:
        return None
    err = InvalidInput.__new__(InvalidInput)
    text = match.group(0).strip()
    SotaiError.__init__(err, text)
    err.field, err.value, err.rule = match.group("field"), match.group("value"), match.group("rule").strip()
    return err


def from_triton(model: str, url: str, exc: BaseException, timeout_s: float | None = None) -> SotaiError:
    """tritonclient's exception (or a transport error) -> InvalidInput | TritonOverloaded | DeadlineExceeded |
    RequestCancelled | TritonUnavailable | SotaiError. timeout_s: the caller's, for the deadline's message."""
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    message = message or type(exc).__name__
    status = str(exc.status() or "") if hasattr(exc, "status") and callable(exc.status) else ""
    invalid = invalid_input_from(message)
    if invalid is not None:
        return invalid
    blob = f"{status} {message}"
    first_line = message.splitlines()[0][:200]
    if any(s in blob for s in _OVERLOADED):
        return TritonOverloaded(f"Triton at {url} (model {model})", first_line)
    if any(s in blob for s in _DEADLINE):
        return DeadlineExceeded(timeout_s, f"{model}: {first_line}")
    if any(s in blob for s in _CANCELLED):
        return RequestCancelled(f"{model}: {first_line}")
    if isinstance(exc, (ConnectionError, OSError)) or any(s in blob for s in _UNAVAILABLE):
        return TritonUnavailable(url, message.splitlines()[0][:200])
    return SotaiError(f"{model}: {message}" + (f" (status {status})" if status else ""))


class MapsTritonErrors:
    """Shared by the sync and asyncio clients: a Triton/transport error -> this project's error."""

    url: str
    _catalog: object

    def _error(self, model: str, exc: BaseException, timeout_s: float | None = None) -> SotaiError:
        if isinstance(exc, SotaiError):
            return exc
        err = from_triton(model, self.url, exc, timeout_s)
        if not isinstance(err, (InvalidInput, TritonOverloaded, DeadlineExceeded, RequestCancelled)):
            self._catalog = None  # a restarted server may serve another repository
        return err
