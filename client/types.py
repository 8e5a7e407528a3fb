"""Request, progress and result types shared by the client, the CLI and the gateway."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from sotai.errors import InvalidInput
from sotai.limits import SEED_RANGE, TEXT_MAX_CHARS, TOP_K_RANGE, check_int, check_tags, check_text, check_timeout
from sotai.params import GenerationParams

# What a request starts from; each skips the stages before it.
#   text:   Japanese text -> RAG -> Dart -> diffusion
#   tags:   Danbooru tags -> Dart (completes and orders them) -> diffusion   (bypasses RAG)
#   prompt: an SDXL prompt -> diffusion, exactly as given                   (bypasses RAG and Dart)
SOURCES = ("text", "tags", "prompt")


@dataclass(frozen=True)
class GenerateRequest:
    """One generation request: exactly one of `text`, `tags`, `prompt`, plus every generation parameter."""

    text: str = ""
    params: GenerationParams = field(default_factory=GenerationParams)
    tags: tuple[str, ...] = ()
    prompt: str = ""
    top_k: int = 20  # RAG candidates handed to Dart (text requests only)
    # The whole request's deadline in seconds (None: the client's timeout_s only). Sent to Triton as the
    # gRPC deadline and the request `timeout`: painting stops at the next step once it has passed.
    timeout_s: float | None = None
    # Triton request id of the painting call (the gateway names its jobs so skip/interrupt can find them).
    request_id: str = ""

    @property
    def source(self) -> str:
        given = [name for name in SOURCES if getattr(self, name)]
        return given[0] if len(given) == 1 else ""

    def checked(self) -> "GenerateRequest":
        """A validated copy (InvalidInput names the field and the limit); seed -1 becomes a concrete seed.

        The client, not each stage, draws the random seed: Dart and diffusion then use the same one,
        and the seed returned reproduces the whole result (tags and image) when sent again.
        """
        given = [name for name in SOURCES if getattr(self, name)]
        if len(given) != 1:
            shown = ", ".join(given) if given else "none"
            raise InvalidInput("text", self.text, f"give exactly one of text, tags, prompt (got: {shown})")
        params = self.params.checked()
        if params.seed == -1:
            params = replace(params, seed=random.randint(0, SEED_RANGE[1]))
        tags = tuple(check_tags("tags", list(self.tags))) if self.tags else ()
        text = check_text("text", self.text) if self.text else ""
        prompt = check_text("prompt", self.prompt, max_chars=TEXT_MAX_CHARS) if self.prompt else ""
        top_k = check_int("top_k", self.top_k, *TOP_K_RANGE)
        return GenerateRequest(text=text, params=params, tags=tags, prompt=prompt, top_k=top_k,
                               timeout_s=check_timeout("timeout_s", self.timeout_s), request_id=self.request_id)


@dataclass(frozen=True)
class TagsResult:
    tags: list[dict]  # {tag, score, category, reason}
    prompt: str


@dataclass(frozen=True)
class GenerateResult(TagsResult):
    images: list[bytes] = field(default_factory=list)  # PNG files
    seed: int = -1
    route: str = ""  # which Triton models ran, e.g. "sotai" or "rag > dart > diffusion_stream"


# Share of the whole request each stage stands for, for one progress bar (diffusion dominates).
STAGE_SPAN = {"rag": (0.0, 0.05), "dart": (0.05, 0.2), "diffusion": (0.2, 1.0)}


@dataclass(frozen=True)
class Progress:
    """A stage started (step 0) or advanced. Dart's event carries the final tags before painting starts."""

    stage: str  # rag | dart | diffusion
    step: int
    total: int
    preview: bytes = b""  # diffusion: a small PNG of the picture in progress (b"" between previews)
    tags: list[dict] | None = None
    prompt: str | None = None

    @property
    def fraction(self) -> float:
        """Progress of the whole request, 0..1."""
        lo, hi = STAGE_SPAN.get(self.stage, (0.0, 1.0))
        return lo + (hi - lo) * (self.step / self.total if self.total else 0.0)
