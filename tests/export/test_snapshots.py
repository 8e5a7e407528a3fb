"""Real-architecture snapshots (export/snapshots.py): the configs are the real ones, the tokenizers are CLIP's."""

from __future__ import annotations

import json

import pytest
import torch

from sotai.export.snapshots import CONFIGS, REAL_MODELS, clip_bpe_files, write_safetensors, write_snapshot

# Parameter counts of the published checkpoints (SDXL base = Animagine XL 3.0/3.1; dart-v2-moe-sft).
REAL_PARAMETERS = {"text_encoder": 123_060_480, "text_encoder_2": 694_659_840, "unet": 2_567_463_684,
                   "vae": 83_653_863}


def _meta_model(part: str):
    config = json.loads((CONFIGS / "sdxl" / part / "config.json").read_text())
    with torch.device("meta"):  # the architecture without its memory
        if part == "unet":
            from diffusers import UNet2DConditionModel
            return UNet2DConditionModel.from_config(config)
        if part == "vae":
            from diffusers import AutoencoderKL
            return AutoencoderKL.from_config(config)
        import transformers
        return getattr(transformers, config["architectures"][0])(transformers.CLIPTextConfig(**config))


@pytest.mark.parametrize("part", list(REAL_PARAMETERS))
def test_sdxl_configs_have_the_published_parameter_counts(part):
    assert sum(p.numel() for p in _meta_model(part).parameters()) == REAL_PARAMETERS[part]


def test_dart_config_has_the_published_parameter_count():
    from transformers import MixtralConfig, MixtralForCausalLM

    config = json.loads((CONFIGS / "dart-v2-moe-sft" / "config.json").read_text())
    with torch.device("meta"):
        model = MixtralForCausalLM(MixtralConfig(**config))
    assert sum(p.numel() for p in model.parameters()) == 165_650_688  # "166M"


def test_clip_tokenizers_are_the_real_bpe(tmp_path):
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe_files()
    assert len(vocab) == 49408 and len(merges) == 48894
    snapshot = write_snapshot("cagliostrolab/animagine-xl-3.0", tmp_path / "sdxl", parts=("vae",), log=lambda _: None)
    for name, pad in (("tokenizer", 49407), ("tokenizer_2", 0)):
        tok = CLIPTokenizer.from_pretrained(snapshot / name)
        # CLIP's published ids for this sentence (openai/clip-vit-large-patch14's tokenizer).
        assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
        assert tok("1girl, silver hair").input_ids[1:-1] == tok.convert_tokens_to_ids(
            tok.tokenize("1girl, silver hair"))
        assert tok("x", padding="max_length", max_length=6).input_ids[-1] == pad, name  # tokenizer_2 pads "!"


def test_small_parts_load_in_diffusers_and_run(tmp_path):
    from diffusers import AutoencoderKL

    snapshot = write_snapshot("cagliostrolab/animagine-xl-3.0", tmp_path / "sdxl", parts=("vae",), log=lambda _: None)
    vae = AutoencoderKL.from_pretrained(snapshot / "vae", torch_dtype=torch.float32)
    assert sum(p.numel() for p in vae.parameters()) == REAL_PARAMETERS["vae"]
    with torch.no_grad():
        image = vae.decode(torch.randn(1, 4, 8, 8)).sample
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
    assert (snapshot / "model_index.json").is_file() and (snapshot / "scheduler" / "scheduler_config.json").is_file()


def test_streamed_safetensors_read_back_exactly(tmp_path):
    from safetensors.torch import load_file

    tensors = {"a": torch.randn(3, 5).half(), "b": torch.arange(7), "empty": torch.zeros(0), "c": torch.randn(2).bfloat16()}
    write_safetensors(tensors, tmp_path / "x.safetensors")
    back = load_file(tmp_path / "x.safetensors")
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def test_every_real_model_has_its_configs():
    for model in REAL_MODELS.values():
        assert (CONFIGS / model.config_dir).is_dir(), model.repo_id
    with pytest.raises(ValueError, match="no real config"):
        write_snapshot("someone/else", "/nonexistent")


def test_the_package_data_globs_ship_every_real_config():
    """A wheel carries what pyproject's package-data names: every config the snapshots are built from."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = root / setuptools["package-dir"]["sotai.export"]
    assert CONFIGS.parent.resolve() == package_dir.resolve()
    shipped = {p for pattern in setuptools["package-data"]["sotai.export"] for p in package_dir.glob(pattern)}
    assert shipped == set(CONFIGS.rglob("*.json")) and len(shipped) == 8  # sdxl 6, its fp16-fix VAE, dart
    # An importable folder name would make setuptools warn that it is a package missing from `packages`.
    assert not CONFIGS.name.isidentifier()
