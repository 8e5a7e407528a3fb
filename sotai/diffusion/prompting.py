"""The model's prompt conventions applied to a prompt, and prompts longer than CLIP's 77 tokens.

The quality tags, rating tags and default negative prompt come from the served model's entry in
`sotai.diffusion.conventions` (Animagine XL 3.0: `masterpiece, best quality`, `rating: general` ...).
`GenerationParams.quality_tags=False` leaves the prompt exactly as given (no quality or rating tags);
`default_negative=False` uses only the request's negative prompt.

A1111's emphasis syntax (`(tag:1.2)`, `[tag]`, `BREAK`: `sotai.diffusion.emphasis`) gives each token
a multiplier (`weighted_chunks`), applied to each encoder's hidden states by `emphasize`.
"""

from __future__ import annotations

import numpy as np

from sotai.diffusion.conventions import ANIMAGINE_XL_30, PromptConventions
from sotai.diffusion.emphasis import is_break, item_tags, parse_attention, split_top_level
from sotai.errors import InvalidInput

# Prompts may span this many 77-token chunks: 40 x 75 = 3000 CLIP tokens, what PROMPT_MAX_CHARS
# (12000) characters of English tags make at about 4 characters a token. The TensorRT engines'
# shape profiles are built for it; a prompt past it is refused, never cut.
MAX_PROMPT_CHUNKS = 40
# A full chunk ends at its last comma when that is at most this many tokens back (A1111's default).
COMMA_BACKTRACK = 20


def _split_tags(text: str) -> list[str]:
    # Bracket-aware: `(silver hair, red eyes:1.2)` stays one item, its weight with it.
    return split_top_level(text)


def _join_unique(*groups, field: str = "prompt") -> str:
    """Items in order, an item whose tags are all already there left out (so `(masterpiece:1.2)`
    keeps the default `masterpiece` from being added a second time)."""
    seen, out = set(), []
    for group in groups:
        for item in group:
            keys = {t.tag.lower() for t in item_tags(item, field)} or {item.lower()}
            if not keys <= seen:
                seen |= keys
                out.append(item)
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
        negative_prompt = (_join_unique(_split_tags(negative_prompt), defaults, field="negative_prompt")
                           if negative_prompt.strip() else ", ".join(defaults))
    return prompt, negative_prompt


def token_chunks(tokenizer, text: str, field: str = "prompt") -> np.ndarray:
    """input_ids [n_chunks, model_max_length] for `text`; nothing is truncated.

    Up to model_max_length-2 tokens this is exactly what diffusers feeds the encoder (one padded
    row). A longer prompt is split into rows of at most model_max_length-2 tokens, each with its own
    start/end tokens, the way the A1111 web UI handles long prompts (`chunk_layout`: a full row
    moves the words after its last comma to the next); the encoder outputs of the rows are
    concatenated along the sequence, which the UNet's cross-attention accepts at any length.
    """
    length = tokenizer.model_max_length
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) <= length - 2:
        row = tokenizer(text, padding="max_length", max_length=length, truncation=True).input_ids
        return np.asarray([row], dtype=np.int64)
    return chunk_layout(tokenizer, [(text, 1.0)], field)[0]


def pad_chunks(tokenizer, rows: np.ndarray, n: int) -> np.ndarray:
    """Append rows encoding the empty string until there are n (prompt and negative must match)."""
    if len(rows) >= n:
        return rows
    empty = token_chunks(tokenizer, "")
    return np.concatenate([rows, np.repeat(empty, n - len(rows), axis=0)])


def unweighted(text: str, field: str = "prompt") -> str | None:
    """The text the tokens come from when no token is weighted and there is no BREAK, else None:
    `(tag:1.0)` -> `tag`, `yuuki \\(sao\\)` -> `yuuki (sao)`."""
    pieces = parse_attention(text, field)
    return pieces[0][0] if len(pieces) == 1 and pieces[0][1] == 1.0 else None


def weighted_chunks(tokenizer, text: str, field: str = "prompt") -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, multipliers), both [n_chunks, model_max_length], for a prompt in A1111's syntax.

    Each piece of `parse_attention` is tokenized alone and its tokens get its weight (start, end
    and padding tokens 1.0), as A1111 does. The rows are laid out as `token_chunks` lays them out
    (a text without syntax gives its very rows). BREAK ends the chunk under way (an empty one too,
    as A1111).
    """
    return chunk_layout(tokenizer, parse_attention(text, field), field)


def chunk_layout(tokenizer, pieces: list[tuple[str, float]], field: str) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, multipliers) of weighted pieces laid out in chunks as A1111's `tokenize_line`:
    75 tokens a chunk; BREAK ends the chunk under way; a chunk that fills up while its last comma
    is at most COMMA_BACKTRACK tokens back ends after that comma, the rest moving to the next
    chunk (A1111's "Prompt word wrap length limit", default 20). Rows: start, tokens, end, padding
    (diffusers' layout, so a short prompt is exactly diffusers' row)."""
    length = tokenizer.model_max_length
    body = length - 2
    comma = tokenizer.convert_tokens_to_ids(",</w>")  # A1111: vocab[',</w>']
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal tokens, weights, last_comma
        chunks.append((tokens, weights))
        tokens, weights, last_comma = [], [], -1

    for piece, weight in pieces:
        if is_break(piece, weight):
            close()
            continue
        for token in tokenizer(piece, add_special_tokens=False).input_ids if piece else ():
            if token == comma:
                last_comma = len(tokens)
            elif len(tokens) == body and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                moved = tokens[cut:], weights[cut:]
                tokens, weights = tokens[:cut], weights[:cut]
                close()
                tokens, weights = list(moved[0]), list(moved[1])
            if len(tokens) == body:
                close()
            tokens.append(token)
            weights.append(weight)
        if len(chunks) > MAX_PROMPT_CHUNKS:
            break
    if tokens or not chunks:
        close()
    if len(chunks) > MAX_PROMPT_CHUNKS:
        raise InvalidInput(field, f"<more than {MAX_PROMPT_CHUNKS} chunks>",
                           f"must be at most {body * MAX_PROMPT_CHUNKS} CLIP tokens ({MAX_PROMPT_CHUNKS} chunks of {body})")
    ids = np.full((len(chunks), length), tokenizer.pad_token_id, dtype=np.int64)
    multipliers = np.ones((len(chunks), length), dtype=np.float32)
    for row, (toks, ws) in enumerate(chunks):
        ids[row, 0] = tokenizer.bos_token_id
        ids[row, 1:len(toks) + 1] = toks
        ids[row, len(toks) + 1] = tokenizer.eos_token_id
        multipliers[row, 1:len(toks) + 1] = ws
    return ids, multipliers


def pad_multipliers(multipliers: np.ndarray, n: int) -> np.ndarray:
    """The multipliers of `pad_chunks`' added rows: 1.0."""
    if len(multipliers) >= n:
        return multipliers
    return np.concatenate([multipliers, np.ones((n - len(multipliers), multipliers.shape[1]), dtype=np.float32)])


def emphasize(states, multipliers):
    """A1111's "Original" emphasis: each chunk's hidden states [rows, seq, D] times its tokens'
    multipliers [rows, seq], then rescaled so the chunk's mean is what it was. Rows whose
    multipliers are all 1.0 are returned untouched (bit for bit); the work is in float32."""
    import torch

    weighted = (multipliers != 1.0).any(dim=1)
    if not bool(weighted.any()):
        return states
    out = states.clone()
    z = states[weighted].float()
    before = z.mean(dim=(1, 2), keepdim=True)
    z = z * multipliers[weighted].to(z.device, torch.float32).unsqueeze(-1)
    after = z.mean(dim=(1, 2), keepdim=True)
    # A mean of exactly 0 (every token weighted 0) has no scale to restore; A1111 would give NaN.
    z = z * torch.where(after == 0, torch.ones_like(after), before / after)
    out[weighted] = z.to(states.dtype)
    return out
