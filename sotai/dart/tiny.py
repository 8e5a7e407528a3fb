"""A tiny random-weight Dart snapshot, laid out like `p1atdev/dart-v2-moe-sft` on the hub.

Used by the `tiny` profile, the tests and `make demo`: same architecture family
(`MixtralForCausalLM`, one KV head, top-2 of 4 experts), same file names, same special tokens,
a one-token-per-tag WordLevel tokenizer over the given tags. Its output is noise; the real
snapshot gives meaningful tags.
"""

from __future__ import annotations

import json
from pathlib import Path

from sotai.dart.vocab import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, normalize_tag

TINY_SEED = 0

# Small enough to build and export in seconds; the shape mirrors dart-v2-moe-sft's config.
TINY_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=1,
    num_local_experts=4,
    num_experts_per_tok=2,
    max_position_embeddings=1024,
    rope_theta=1000.0,
    rms_norm_eps=1e-5,
    sliding_window=None,
    tie_word_embeddings=False,
    hidden_act="silu",
)

SNAPSHOT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def tiny_vocabulary(tags: list[str]) -> list[str]:
    """Special tokens, then each distinct tag (normalized, first occurrence wins), in order."""
    seen = set(SPECIAL_TOKENS)
    vocab = list(SPECIAL_TOKENS)
    for tag in tags:
        name = normalize_tag(tag)
        if name and name not in seen:
            seen.add(name)
            vocab.append(name)
    return vocab


def build_dart_tokenizer(vocab: list[str]):
    """A `PreTrainedTokenizerFast`: WordLevel over whole tags, split on commas, specials as added tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=UNK))
    # "1girl, long hair" -> ["1girl", "long hair"]: a tag is everything between commas.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s*,\s*"), behavior="removed")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        padding_side="left",
    )


def build_tiny_dart(out_dir: Path, tags: list[str]) -> Path:
    """Write a tiny dart-v2-moe-sft-like snapshot for `tags` into `out_dir`; returns `out_dir`.

    Deterministic: the same tag list gives the same files (weights from a fixed seed).
    """
    import torch
    from transformers import GenerationConfig, MixtralConfig, MixtralForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocabulary(tags)
    if len(vocab) == len(SPECIAL_TOKENS):
        raise ValueError("build_tiny_dart needs at least one tag for its vocabulary")

    config = MixtralConfig(
        vocab_size=len(vocab),
        bos_token_id=vocab.index(BOS), eos_token_id=vocab.index(EOS), pad_token_id=vocab.index(PAD),
        **TINY_CONFIG,
    )
    config.architectures = ["MixtralForCausalLM"]
    torch.manual_seed(TINY_SEED)
    model = MixtralForCausalLM(config).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        do_sample=True, temperature=1.0, top_p=1.0, top_k=100, max_new_tokens=128,
    ).save_pretrained(out_dir)
    build_dart_tokenizer(vocab).save_pretrained(out_dir)
    (out_dir / "tags.json").write_text(json.dumps(vocab[len(SPECIAL_TOKENS):], ensure_ascii=False, indent=0))
    return out_dir
