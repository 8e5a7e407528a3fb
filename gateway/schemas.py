"""JSON bodies of the gateway's /v1 API (the field names of the client and the CLI).

Types are declared here (strict: "20" is not an integer, unknown fields are refused); every limit
is checked by `sotai.limits`, so a bad value gets the same words here as from Triton.
"""

from __future__ import annotations

import base64

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from sotai.client import GenerateRequest, GenerateResult, Progress, TagsResult
from sotai.limits import (
    CFG_RANGE, NEGATIVE_PROMPT_MAX_CHARS, NUM_IMAGES_RANGE, RATINGS, SCHEDULERS, SEED_RANGE, SIZE_MULTIPLE, SIZE_RANGE,
    STEPS_RANGE, TAGS_MAX, TEXT_MAX_CHARS, TIMEOUT_RANGE, GenerationParams,
)
from sotai.settings import Settings


def _bounds(limits: tuple) -> dict:
    return {"minimum": limits[0], "maximum": limits[1]}


def _range(limits: tuple) -> str:
    return f"{limits[0]}..{limits[1]}"


def _size() -> str:
    return f"multiple of {SIZE_MULTIPLE} in {_range(SIZE_RANGE)}"


class GenerationBody(BaseModel):
    """`text` (Japanese) or `tags` (Danbooru tags; RAG is bypassed); unset parameters take the server defaults."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "銀髪の少女が夜の桜の下で微笑んでいる", "steps": 20, "seed": 42},
        {"tags": ["1girl", "silver_hair", "cherry_blossoms", "night"], "width": 832, "height": 1216},
    ]})

    # The limits are documented in the schema (json_schema_extra: OpenAPI only, not enforced by pydantic) so
    # clients and fuzzers see them; sotai.limits alone checks them, in the same words as Triton.
    text: StrictStr = Field("", description=f"Japanese scene description (1..{TEXT_MAX_CHARS} characters).",
                            json_schema_extra={"maxLength": TEXT_MAX_CHARS})
    tags: list[StrictStr] | None = Field(None, description="Danbooru tags; when given, RAG is bypassed and `text` must be empty.",
                                         json_schema_extra={"maxItems": TAGS_MAX})
    negative_prompt: StrictStr = Field("", json_schema_extra={"maxLength": NEGATIVE_PROMPT_MAX_CHARS})
    steps: StrictInt | None = Field(None, description=f"{_range(STEPS_RANGE)}; default DEFAULT_STEPS",
                                    json_schema_extra=_bounds(STEPS_RANGE))
    cfg_scale: StrictFloat | StrictInt | None = Field(None, description=f"{_range(CFG_RANGE)}; default DEFAULT_CFG_SCALE",
                                                      json_schema_extra=_bounds(CFG_RANGE))
    width: StrictInt | None = Field(None, description=f"{_size()}; default DEFAULT_WIDTH",
                                    json_schema_extra={**_bounds(SIZE_RANGE), "multipleOf": SIZE_MULTIPLE})
    height: StrictInt | None = Field(None, description=f"{_size()}; default DEFAULT_HEIGHT",
                                     json_schema_extra={**_bounds(SIZE_RANGE), "multipleOf": SIZE_MULTIPLE})
    seed: StrictInt = Field(-1, description="-1 = random; the seed used is returned", json_schema_extra=_bounds(SEED_RANGE))
    num_images: StrictInt = Field(1, description=_range(NUM_IMAGES_RANGE), json_schema_extra=_bounds(NUM_IMAGES_RANGE))
    scheduler: StrictStr = Field("euler_a", description=" | ".join(SCHEDULERS), json_schema_extra={"enum": list(SCHEDULERS)})
    rating: StrictStr = Field("general", description=" | ".join(RATINGS), json_schema_extra={"enum": list(RATINGS)})
    quality_tags: StrictBool = Field(True, description="add Animagine's quality and rating tags")
    default_negative: StrictBool = Field(True, description="add Animagine's default negative prompt")
    timeout_s: StrictFloat | StrictInt | None = Field(
        None, description=f"seconds ({_range(TIMEOUT_RANGE)}); past them painting stops and the answer is 504 "
                          "naming timeout_s. Unset: no deadline", json_schema_extra=_bounds(TIMEOUT_RANGE))

    def to_request(self, settings: Settings) -> GenerateRequest:
        """The client's request, checked (raises InvalidInput naming the field and the limit)."""
        params = GenerationParams.from_settings(
            settings, steps=self.steps, cfg_scale=self.cfg_scale, width=self.width, height=self.height,
            seed=self.seed, negative_prompt=self.negative_prompt, num_images=self.num_images,
            scheduler=self.scheduler, rating=self.rating, quality_tags=self.quality_tags,
            default_negative=self.default_negative,
        )
        return GenerateRequest(text=self.text, tags=tuple(self.tags or ()), params=params,
                               timeout_s=self.timeout_s).checked()


class TagOut(BaseModel):
    tag: str
    score: float
    category: str
    reason: dict | str | None = None


class TagsResponse(BaseModel):
    tags: list[TagOut]
    prompt: str

    @classmethod
    def of(cls, result: TagsResult) -> "TagsResponse":
        return cls(tags=[TagOut(**{k: t.get(k) for k in ("tag", "score", "category", "reason")}) for t in result.tags],
                   prompt=result.prompt)


class ImagesResponse(TagsResponse):
    images: list[str] = Field(description="base64 PNG files")
    seed: int = Field(description="the seed used; send it again to get the same tags and images")

    @classmethod
    def of(cls, result: GenerateResult) -> "ImagesResponse":  # type: ignore[override]
        tags = TagsResponse.of(result)
        return cls(tags=tags.tags, prompt=tags.prompt, seed=result.seed,
                   images=[base64.b64encode(png).decode("ascii") for png in result.images])


class ErrorResponse(BaseModel):
    detail: str
    field: str | None = None
    rule: str | None = None


def progress_event(event: Progress) -> dict:
    """A Progress as the `progress` server-sent event's JSON."""
    data = {"stage": event.stage, "step": event.step, "total": event.total, "fraction": round(event.fraction, 4)}
    if event.preview:
        data["preview"] = base64.b64encode(event.preview).decode("ascii")
    if event.tags is not None:
        data["tags"] = event.tags
        data["prompt"] = event.prompt
    return data
