"""Request and result types shared by the client, the CLI and the gateway."""

from __future__ import annotations

from dataclasses import dataclass, field

from sotai.limits import GenerationParams


@dataclass(frozen=True)
class GenerateRequest:
    text: str
    params: GenerationParams = field(default_factory=GenerationParams)


@dataclass(frozen=True)
class TagsResult:
    tags: list[dict]  # {tag, score, category, reason}
    prompt: str


@dataclass(frozen=True)
class GenerateResult(TagsResult):
    images: list[bytes] = field(default_factory=list)  # PNG files
    seed: int = -1
