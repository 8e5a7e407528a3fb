"""The model's prompt conventions applied to a prompt, and prompts longer than CLIP's 77 tokens.

The quality tags, rating tags and default negative prompt come from the served model's entry in
`sotai.diffusion.conventions` (Animagine XL 3.0: `masterpiece, best quality`, `rating: general` ...).
`GenerationParams.quality_tags=False` leaves the prompt exactly as given (no quality or rating tags);
`default_negative=False` uses only the request's negative prompt.
"""

from __future__ import annotations

import numpy as np

from sotai.diffusion.conventions import ANIMAGINE_XL_30, PromptConventions
from sotai.errors import InvalidInput

# Prompts may span this many 77-token chunks: 40 x 75 = 3000 CLIP tokens, what PROMPT_MAX_CHARS
# (12000) characters of English tags make at about 4 characters a token. The TensorRT engines'
# shape profiles are built for it; a prompt past it is refused, never cut.
MAX_PROMPT_CHUNKS = 40

def _split_tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _join_unique(*groups) -> str:
    seen, out = set(), []
    for group in groups:
        for tag in group:
            key = tag.lower()
            if key not in seen:
                seen.add(key)
                out.append(tag)
    return ", ".join(out)


def animagine_prompts(prompt: str, negative_prompt: str, *, rating: str, quality_tags: bool, default_negative: bool,
                      conventions: PromptConventions = ANIMAGINE_XL_30) -> tuple[str, str]:
    """(prompt, negative prompt) as sent to the text encoders, by the model's conventions.

    Tags already present are not repeated. When the requested rating asks for `nsfw`, that tag is
    taken out of the default negative prompt, which would otherwise contradict it.
    """
    rating_tags = conventions.rating_tags[rating]
    if quality_tags:
        prompt = _join_unique(_split_tags(prompt), rating_tags, conventions.quality_tags)
    if default_negative:
        defaults = [t for t in _split_tags(conventions.default_negative) if t not in rating_tags]
        negative_prompt = _join_unique(_split_tags(negative_prompt), defaults) if negative_prompt.strip() else ", ".join(defaults)
    return prompt, negative_prompt


def token_chunks(tokenizer, text: str, field: str = "prompt") -> np.ndarray:
    """input_ids [n_chunks, model_max_length] for `text`; nothing is truncated.

    Up to model_max_length-2 tokens this is exactly what diffusers feeds the encoder (one padded
    row). A longer prompt is split into rows of model_max_length-2 tokens, each with its own
    start/end tokens, the way the A1111 web UI handles long prompts; the encoder outputs of the
    rows are concatenated along the sequence, which the UNet's cross-attention accepts at any length.
    """
    length = tokenizer.model_max_length
    body = length - 2
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) <= body:
        row = tokenizer(text, padding="max_length", max_length=length, truncation=True).input_ids
        return np.asarray([row], dtype=np.int64)
    if len(ids) > body * MAX_PROMPT_CHUNKS:
        raise InvalidInput(field, f"<{len(ids)} tokens>", f"must be at most {body * MAX_PROMPT_CHUNKS} CLIP tokens")
    rows = []
    for start in range(0, len(ids), body):
        part = ids[start:start + body]
        row = [tokenizer.bos_token_id, *part, tokenizer.eos_token_id]
        rows.append(row + [tokenizer.pad_token_id] * (length - len(row)))
    return np.asarray(rows, dtype=np.int64)


def pad_chunks(tokenizer, rows: np.ndarray, n: int) -> np.ndarray:
    """Append rows encoding the empty string until there are n (prompt and negative must match)."""
    if len(rows) >= n:
        return rows
    empty = token_chunks(tokenizer, "")
    return np.concatenate([rows, np.repeat(empty, n - len(rows), axis=0)])
