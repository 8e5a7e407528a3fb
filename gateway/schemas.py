"""JSON bodies of the gateway's /v1 API (the field names of the client and the CLI).

Fields are derived from sotai.params (strict: "20" is not an integer, unknown fields are refused); every limit
is checked by `sotai.limits`, so a bad value gets the same words here as from Triton.
"""

from __future__ import annotations

import base64

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, create_model

from sotai.client import GenerateRequest, GenerateResult, Progress, TagsResult
from sotai.limits import TAGS_MAX, TEXT_MAX_CHARS, TIMEOUT_RANGE
from sotai.params import GENERATION_PARAMS, GenerationParams, Param
from sotai.settings import Settings


_STRICT_TYPES = {"int": StrictInt, "size": StrictInt, "float": StrictFloat | StrictInt, "choice": StrictStr,
                 "text": StrictStr, "bool": StrictBool,
                 "image": StrictStr}


def _param_field(p: Param) -> tuple:
    """A pydantic field of a declared parameter: strict type, documented limits; None = the server's default."""
    kind = _STRICT_TYPES[p.kind]
    if p.setting:
        return kind | None, Field(None, description=p.description(), json_schema_extra=p.json_schema())
    default = "" if p.kind == "image" else p.default  # JSON carries an image as base64 text
    return kind, Field(default, description=p.description(), json_schema_extra=p.json_schema())


class _RequestFields(BaseModel):
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
    timeout_s: StrictFloat | StrictInt | None = Field(
        None, description=f"seconds ({TIMEOUT_RANGE[0]}..{TIMEOUT_RANGE[1]}); past them painting stops and the answer "
                          "is 504 naming timeout_s. Unset: no deadline",
        json_schema_extra={"minimum": TIMEOUT_RANGE[0], "maximum": TIMEOUT_RANGE[1]})

    def to_request(self, settings: Settings) -> GenerateRequest:
        """The client's request, checked (raises InvalidInput naming the field and the limit)."""
        params = GenerationParams.from_settings(settings, **{p.name: p.from_json(getattr(self, p.name))
                                                               for p in GENERATION_PARAMS})
        return GenerateRequest(text=self.text, tags=tuple(self.tags or ()), params=params,
                               timeout_s=self.timeout_s).checked()


# The request fields, then one field per generation parameter (sotai.params).
GenerationBody = create_model("GenerationBody", __base__=_RequestFields,
                              **{p.name: _param_field(p) for p in GENERATION_PARAMS})


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
