"""Errors shared by the library, the Triton models, the client and the gateway.

Every message names what is wrong and what to do about it, so a user who reads
only the last line of a traceback (or an HTTP 4xx body) can fix the problem.
"""

from __future__ import annotations

from pathlib import Path


class SotaiError(Exception):
    """Base class for every error this project raises on purpose."""


class InvalidInput(SotaiError, ValueError):
    """A request field is outside its limit. Maps to Triton INVALID_ARG and HTTP 422."""

    def __init__(self, field: str, value: object, rule: str):
        self.field = field
        self.value = value
        self.rule = rule
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}={shown} is invalid: {rule}")


class MissingArtifact(SotaiError, FileNotFoundError):
    """A model file, index or data file is missing or unusable; says the command that makes it."""

    def __init__(self, what: str, path: Path | str, fix: str, detail: str = ""):
        self.what = what
        self.path = Path(path)
        self.fix = fix
        self.detail = detail
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{what} not usable at {path}{extra}: run `{fix}`")


class StageError(SotaiError, RuntimeError):
    """A pipeline stage (a Triton model called over BLS, say) failed; keeps its name."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(f"{stage}: {message}")
