"""Hub-layout snapshots at the real architectures with random weights, for the real-size path here.

No model hub is reachable from this machine or CI, but the configs are public: kept in
`export/real-configs/` as the JSON the hub serves, they build `cagliostrolab/animagine-xl-3.0` (and 3.1,
the same SDXL architecture) and `p1atdev/dart-v2-moe-sft` with the real classes, so exports, Triton
and memory see the real sizes (UNet 2.57 B, text_encoder_2 0.69 B, Dart 0.17 B parameters).

Memory: each part is built in half precision and written tensor by tensor (never the whole fp32
UNet, never a second serialized copy): peak RSS is about one fp16 UNet (5.1 GB).
The CLIP tokenizers are the real ones: vocab.json and merges.txt built from CLIP's BPE merges that
open_clip_torch ships (bpe_simple_vocab_16e6.txt.gz), as CLIP's own SimpleTokenizer builds them.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from sotai.errors import MissingArtifact

# Not an importable name (the hyphen): setuptools ships it as plain package data, not as a package.
CONFIGS = Path(__file__).parent / "real-configs"
SDXL_PARTS = ("text_encoder", "text_encoder_2", "unet", "vae")
SEED = 0


@dataclass(frozen=True)
class RealModel:
    repo_id: str
    family: str  # "sdxl", "vae" (a VAE alone, config.json at the top) or "dart": which builder
    config_dir: str


REAL_MODELS = {
    m.repo_id: m for m in (
        RealModel("cagliostrolab/animagine-xl-3.0", "sdxl", "sdxl"),
        RealModel("cagliostrolab/animagine-xl-3.1", "sdxl", "sdxl"),
        # The fp16-safe SDXL VAE the GPU target uses (ExportPlan.vae_fp16_fix): force_upcast false.
        RealModel("madebyollin/sdxl-vae-fp16-fix", "vae", "sdxl-vae-fp16-fix"),
        RealModel("p1atdev/dart-v2-moe-sft", "dart", "dart-v2-moe-sft"),
    )
}


def write_snapshot(repo_id: str, dest: Path, parts: tuple[str, ...] | None = None, log=print) -> Path:
    """Write `repo_id`'s hub layout into dest (random weights, real configs and tokenizers)."""
    if repo_id not in REAL_MODELS:
        raise ValueError(f"no real config for {repo_id!r}; known: {', '.join(REAL_MODELS)}")
    model = REAL_MODELS[repo_id]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if model.family == "sdxl":
        _write_sdxl(CONFIGS / model.config_dir, dest, parts or SDXL_PARTS, log)
    elif model.family == "vae":
        started = time.monotonic()
        n = _write_sdxl_part(CONFIGS / model.config_dir / "config.json", dest, "vae")
        log(f"[snapshot] vae: {n:,} parameters, {time.monotonic() - started:.0f} s, peak RSS {peak_rss_gib():.1f} GiB")
    else:
        _write_dart(CONFIGS / model.config_dir, dest, log)
    return dest


# -- SDXL -------------------------------------------------------------------------------------------


def write_sdxl_layout(configs: Path, dest: Path) -> None:
    """What an SDXL snapshot holds besides its parts: model_index.json, the scheduler, the tokenizers."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(configs / "model_index.json", dest / "model_index.json")
    (dest / "scheduler").mkdir(exist_ok=True)
    shutil.copy2(configs / "scheduler" / "scheduler_config.json", dest / "scheduler" / "scheduler_config.json")
    vocab, merges = clip_bpe_files()
    # SDXL's two tokenizers are CLIP's; the second pads with "!" (OpenCLIP's convention, id 0).
    for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        write_clip_tokenizer(dest / name, vocab, merges, pad_token=pad)


def build_sdxl_part(config: dict, part: str):
    """One SDXL part from its config with random weights, in torch's default dtype and device."""
    if part in ("unet", "vae"):
        from diffusers import AutoencoderKL, UNet2DConditionModel

        return (UNet2DConditionModel if part == "unet" else AutoencoderKL).from_config(config)
    import transformers

    # The hub config's torch_dtype (float16) would leave some layers fp16 in an fp32 build; without it
    # an fp16 build gets the same weights (checked).
    text = {k: v for k, v in config.items() if k not in ("torch_dtype", "dtype")}
    return getattr(transformers, config["architectures"][0])(transformers.CLIPTextConfig(**text))


def _write_sdxl(configs: Path, dest: Path, parts: tuple[str, ...], log) -> None:
    write_sdxl_layout(configs, dest)
    for part in parts:
        if part not in SDXL_PARTS:
            raise ValueError(f"unknown SDXL part {part!r}; parts: {', '.join(SDXL_PARTS)}")
        started = time.monotonic()
        n = _write_sdxl_part(configs / part / "config.json", dest / part, part)
        log(f"[snapshot] {part}: {n:,} parameters, {time.monotonic() - started:.0f} s, "
            f"peak RSS {peak_rss_gib():.1f} GiB")


def _write_sdxl_part(config_file: Path, out: Path, part: str) -> int:
    import torch

    config = json.loads(config_file.read_text())
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)  # built in half precision: the fp32 UNet (10 GB) never exists
    try:
        model = build_sdxl_part(config, part)
        weights = "diffusion_pytorch_model.safetensors" if part in ("unet", "vae") else "model.safetensors"
    finally:
        torch.set_default_dtype(previous)
    shutil.copy2(config_file, out / "config.json")
    tensors = {k: v for k, v in model.state_dict().items()}
    n = sum(t.numel() for t in model.parameters())
    write_safetensors(tensors, out / weights)
    return n


# -- Dart -------------------------------------------------------------------------------------------


def _write_dart(configs: Path, dest: Path, log) -> None:
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    from sotai.dart.tiny import build_dart_tokenizer, tiny_vocabulary
    from sotai.rag.data import load_tag_table

    started = time.monotonic()
    config = json.loads((configs / "config.json").read_text())
    torch.manual_seed(SEED)
    model = MixtralForCausalLM(MixtralConfig(**config)).eval()
    write_safetensors(model.state_dict(), dest / "model.safetensors")
    shutil.copy2(configs / "config.json", dest / "config.json")
    # Dart's tokens are whole tags; the embedded tag list names them (the real vocabulary is 30,649 rows,
    # of which the tokenizer names the most used tags; the other rows are never produced by a name).
    table = load_tag_table(None).sort_values("post_count", ascending=False)
    vocab = tiny_vocabulary([str(t) for t in table["tag"]])[: config["vocab_size"]]
    build_dart_tokenizer(vocab).save_pretrained(dest)
    n = sum(t.numel() for t in model.parameters())
    log(f"[snapshot] dart: {n:,} parameters, {len(vocab):,} named tokens, {time.monotonic() - started:.0f} s, "
        f"peak RSS {peak_rss_gib():.1f} GiB")


# -- files ------------------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {"float16": "F16", "float32": "F32", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
                       "bool": "BOOL", "uint8": "U8"}


def write_safetensors(tensors, path: Path, metadata: dict | None = None) -> None:
    """safetensors, written tensor by tensor (safetensors' own save_file serializes all of it in memory first).

    tensors: a dict of tensors, or any object whose `items()` yields (name, tensor) again on each call
    and whose `specs()` yields (name, dtype, shape, nbytes) without producing the data (a lazy source).
    """
    import torch

    specs = tensors.specs() if hasattr(tensors, "specs") else (
        (name, t.dtype, tuple(t.shape), t.numel() * t.element_size()) for name, t in tensors.items())
    header, offset = {}, 0
    for name, dtype, shape, nbytes in specs:
        header[name] = {"dtype": _SAFETENSORS_DTYPES[str(dtype).removeprefix("torch.")], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt", **(metadata or {})}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, t in tensors.items():
            t = t.detach().contiguous()
            if t.numel():
                f.write(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def clip_bpe_files() -> tuple[dict[str, int], list[str]]:
    """(vocab, merges) of CLIP's tokenizer (49,408 tokens), from the BPE merges open_clip_torch ships."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")  # located, not imported (it would pull torchvision)
    bpe = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz" if spec and spec.origin else None
    if bpe is None or not bpe.is_file():
        raise MissingArtifact("CLIP BPE merges", bpe or Path("open_clip/bpe_simple_vocab_16e6.txt.gz"),
                              "pip install --no-deps open_clip_torch==3.3.0")
    lines = gzip.decompress(bpe.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]  # CLIP uses the first 48,894 merges
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_tokenizer(out: Path, vocab: dict[str, int], merges: list[str], pad_token: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": pad_token}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "clean_up_tokenization_spaces": True, "errors": "replace", **special,
    }, indent=2))


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP's reversible byte -> printable character table.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
