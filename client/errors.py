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


def from_triton(model: str, url: str, exc: BaseException) -> SotaiError:
    """tritonclient's exception (or a transport error) -> InvalidInput | TritonUnavailable | SotaiError."""
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    message = message or type(exc).__name__
    status = str(exc.status() or "") if hasattr(exc, "status") and callable(exc.status) else ""
    invalid = invalid_input_from(message)
    if invalid is not None:
        return invalid
    blob = f"{status} {message}"
    if isinstance(exc, (ConnectionError, OSError)) or any(s in blob for s in _UNAVAILABLE):
        return TritonUnavailable(url, message.splitlines()[0][:200])
    return SotaiError(f"{model}: {message}" + (f" (status {status})" if status else ""))


class MapsTritonErrors:
    """Shared by the sync and asyncio clients: a Triton/transport error -> this project's error."""

    url: str
    _catalog: object

    def _error(self, model: str, exc: BaseException) -> SotaiError:
        if isinstance(exc, SotaiError):
            return exc
        err = from_triton(model, self.url, exc)
        if not isinstance(err, InvalidInput):
            self._catalog = None  # a restarted server may serve another repository
        return err
