"""A tiny, random-weight, seeded SDXL pipeline: the stand-in for Animagine XL in tests and `make demo`.

The parts have SDXL's architecture (two CLIP text encoders, the second with a projection; a UNet with
`text_time` added conditioning; an 8x AutoencoderKL; 77-token CLIP tokenizers), only very small, so
a 512x768 picture takes well under a second on a CPU. The picture is noise: the weights are random.
Everything is built locally (no hub): the tokenizer's vocabulary is the 512 byte-level symbols
CLIP uses plus merges learned from a small built-in tag corpus.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import torch

SEED = 0
MODEL_MAX_LENGTH = 77  # CLIP's context length, as in the real SDXL tokenizers
TEXT_HIDDEN = 32  # both tiny text encoders
PROJECTION_DIM = 32  # text_encoder_2's pooled projection ("text_embeds")
ADDITION_TIME_EMBED_DIM = 8
TIME_IDS = 6  # original size (2) + crop top-left (2) + target size (2)

# A few Danbooru/Animagine words so the tokenizer learns realistic merges (one token per common word part).
_CORPUS = """
masterpiece best quality 1girl solo long hair silver hair smile looking at viewer night cherry blossoms
outdoors sky tree petals school uniform short hair blue eyes red eyes black hair blonde hair upper body
nsfw lowres bad anatomy bad hands text error missing fingers extra digit fewer digits cropped worst quality
low quality normal quality jpeg artifacts signature watermark username blurry artist name safe sensitive
explicit general rating sitting standing dress skirt shirt flower moon full body portrait cowboy shot
"""
_NUM_MERGES = 200


def _byte_symbols() -> list[str]:
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    return list(bytes_to_unicode().values())


def _learn_merges(words: list[str], num_merges: int) -> list[tuple[str, str]]:
    """Plain BPE (Sennrich et al.) over the corpus words, with CLIP's `</w>` end-of-word marker."""
    vocab = collections.Counter(tuple(w[:-1]) + (w[-1] + "</w>",) for w in words)
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: collections.Counter = collections.Counter()
        for word, freq in vocab.items():
            for a, b in zip(word, word[1:]):
                pairs[a, b] += freq
        if not pairs:
            break
        # Ties broken by the pair itself so the vocabulary is the same on every machine.
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged = collections.Counter()
        for word, freq in vocab.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        vocab = merged
    return merges


def write_tiny_clip_tokenizer(out_dir: Path, *, pad_token: str) -> int:
    """Write vocab.json/merges.txt/tokenizer_config.json for a CLIPTokenizer; returns the vocabulary size."""
    out_dir.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    merges = _learn_merges(_CORPUS.split(), _NUM_MERGES)
    tokens += ["".join(m) for m in merges if "".join(m) not in tokens]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(
        str(out_dir / "vocab.json"), str(out_dir / "merges.txt"), pad_token=pad_token, model_max_length=MODEL_MAX_LENGTH
    )
    tok.save_pretrained(out_dir)
    return len(vocab)


def _text_config(vocab_size: int, **kw):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=3,  # >= 2 so "penultimate hidden state" is a real intermediate layer
        num_attention_heads=4,
        max_position_embeddings=MODEL_MAX_LENGTH,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=1,
        hidden_act="quick_gelu",
        **kw,
    )


def tiny_unet_config(
    *,
    block_out_channels: tuple[int, ...] = (16, 32, 32),
    cross_attention_levels: tuple[bool, ...] = (False, False, True),
    cross_attention_dim: int = 2 * TEXT_HIDDEN,
    layers_per_block: int = 1,
) -> dict:
    """SDXL's UNet layout, shrunk; `text_time` added conditioning.

    SDXL has no attention at the first (full-latent) level and cross-attention below it; the tiny
    default keeps attention only at the lowest level, where self-attention over 1/16 of the latent
    pixels is cheap (at 64x96 latents attention at the second level dominates a CPU step 4 to 1).
    """
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cross_attention_levels)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cross_attention_levels))
    return dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=layers_per_block,
        block_out_channels=tuple(block_out_channels),
        down_block_types=down,
        up_block_types=up,
        # diffusers names the number of heads `attention_head_dim` (a historical misnomer).
        attention_head_dim=tuple(max(1, c // 16) for c in block_out_channels),
        transformer_layers_per_block=1,
        use_linear_projection=True,
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=8,
        addition_embed_type="text_time",
        addition_time_embed_dim=ADDITION_TIME_EMBED_DIM,
        # What the UNet's add_embedding sees: the pooled text embedding + the Fourier-embedded time ids.
        projection_class_embeddings_input_dim=PROJECTION_DIM + TIME_IDS * ADDITION_TIME_EMBED_DIM,
    )


def build_tiny_sdxl(out_dir: Path, *, unet_config: dict | None = None) -> Path:
    """Build the tiny pipeline and `save_pretrained` it (safetensors) into out_dir; returns out_dir.

    Deterministic: the same weights (seeded) and the same files on every run. unet_config replaces
    the tiny UNet's (the benchmark's mid-size UNet; see `tiny_unet_config`).
    """
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    out_dir = Path(out_dir)
    tok_dir = out_dir / "_tokenizer_build"
    vocab_size = write_tiny_clip_tokenizer(tok_dir / "tokenizer", pad_token="<|endoftext|>")
    # SDXL's second tokenizer pads with "!" (token 0), the first with <|endoftext|>; keep that difference.
    write_tiny_clip_tokenizer(tok_dir / "tokenizer_2", pad_token="!")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir / "tokenizer")
    tokenizer_2 = CLIPTokenizer.from_pretrained(tok_dir / "tokenizer_2")

    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(_text_config(vocab_size))
    torch.manual_seed(SEED + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(vocab_size, projection_dim=PROJECTION_DIM))
    torch.manual_seed(SEED + 2)
    unet = UNet2DConditionModel(**(unet_config or tiny_unet_config()))
    torch.manual_seed(SEED + 3)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,  # 4 levels -> the 8x latent scale of the SDXL VAE
        block_out_channels=(4, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        # The mid-block self-attention over every latent pixel would double the tiny decoder's time.
        mid_block_add_attention=False,
        sample_size=128,
        scaling_factor=0.13025,  # SDXL VAE's value
        force_upcast=False,
    )
    # SDXL base / Animagine XL ship these scheduler settings; Euler a is Animagine's recommended sampler.
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    import shutil

    shutil.rmtree(tok_dir)
    return out_dir
