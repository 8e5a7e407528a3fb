"""Downloads of the real weights (the `animagine` profile), with progress and resume.

huggingface_hub shows a tqdm bar per file and resumes partial downloads; with no
network it raises, and we turn that into one message naming the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sotai.errors import SotaiError


@dataclass(frozen=True)
class HubSnapshot:
    repo_id: str
    # Only what the export reads: safetensors weights, configs, tokenizers. Never pickles.
    allow_patterns: tuple[str, ...] = ("*.json", "*.safetensors", "*.txt", "*.model")
    revision: str | None = None


DART = HubSnapshot("p1atdev/dart-v2-moe-sft")
SDXL_PATTERNS = (
    "model_index.json", "scheduler/*.json", "text_encoder/*.json", "text_encoder/model.safetensors",
    "text_encoder_2/*.json", "text_encoder_2/model.safetensors",
    # Tokenizer files by type: a bare "tokenizer/*" would also take a pickled tokenizer/*.bin.
    "tokenizer/*.json", "tokenizer/*.txt", "tokenizer_2/*.json", "tokenizer_2/*.txt",
    "unet/*.json", "unet/diffusion_pytorch_model.safetensors", "vae/*.json",
    "vae/diffusion_pytorch_model.safetensors",
)


def sdxl_snapshot(repo_id: str) -> HubSnapshot:
    """Any SDXL diffusers repository (the Animagine XL models of sotai.diffusion.conventions)."""
    return HubSnapshot(repo_id, allow_patterns=SDXL_PATTERNS)


ANIMAGINE = sdxl_snapshot("cagliostrolab/animagine-xl-3.0")
# SDXL's VAE overflows in fp16; this fine-tune does not (used for the GPU/fp16 target).
VAE_FP16_FIX = HubSnapshot(
    "madebyollin/sdxl-vae-fp16-fix", allow_patterns=("config.json", "diffusion_pytorch_model.safetensors")
)


def download(snapshot: HubSnapshot, dest: Path) -> Path:
    """Download (or resume) a snapshot into `dest` and return it."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            repo_id=snapshot.repo_id, revision=snapshot.revision, local_dir=str(dest),
            allow_patterns=list(snapshot.allow_patterns),
        )
    except Exception as exc:  # OfflineModeIsEnabled, LocalEntryNotFoundError, ConnectionError, ...
        raise SotaiError(
            f"could not download {snapshot.repo_id} into {dest} ({type(exc).__name__}: {exc}). "
            "With no network, download it elsewhere and point DART_MODEL_PATH / SD_MODEL_PATH at the "
            "local snapshot, then run `make export PROFILE=animagine` again"
        ) from exc
    return Path(path)
