"""The dart-v2 input prompt, and the final prompt in Animagine XL's tag order."""

from __future__ import annotations

from dataclasses import dataclass

from sotai.dart.vocab import (
    BOS, CHARACTER_END, CHARACTER_START, COPYRIGHT_END, COPYRIGHT_START, GENERAL_START, INPUT_END, PEOPLE_TAGS,
)
from sotai.diffusion.emphasis import escape

# Danbooru's numeric categories (danbooru_tags.csv) and the names used across the project.
CATEGORY_NAMES = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta"}
CATEGORIES = ("general", "artist", "copyright", "character", "meta")


def aspect_ratio_name(width: int, height: int) -> str:
    """dart-v2's aspect-ratio bucket, with the thresholds Dart was trained with (width / height)."""
    ar = width / height
    if ar <= 1 / 2:
        return "ultra_tall"
    if ar <= 8 / 9:
        return "tall"
    if ar < 9 / 8:
        return "square"
    if ar < 2:
        return "wide"
    return "ultra_wide"


@dataclass(frozen=True)
class DartInput:
    """What goes into one dart-v2 prompt; tags already in Dart's spelling (spaces)."""

    copyright: tuple[str, ...]
    character: tuple[str, ...]
    general: tuple[str, ...]
    rating: str
    aspect_ratio: str
    length: str
    identity: str


def compose_prompt(d: DartInput) -> str:
    """`<|bos|><copyright>…</copyright><character>…</character><|rating:R|><|aspect_ratio:A|><|length:L|><general>…<|identity:I|><|input_end|>`."""
    return (
        f"{BOS}"
        f"{COPYRIGHT_START}{', '.join(d.copyright)}{COPYRIGHT_END}"
        f"{CHARACTER_START}{', '.join(d.character)}{CHARACTER_END}"
        f"<|rating:{d.rating}|><|aspect_ratio:{d.aspect_ratio}|><|length:{d.length}|>"
        f"{GENERAL_START}{', '.join(d.general)}<|identity:{d.identity}|>{INPUT_END}"
    )


def prompt_tokens(d: DartInput) -> list[str]:
    """The same prompt as a token list (one token per tag), for tokenizers without a string form."""
    return [
        BOS, COPYRIGHT_START, *d.copyright, COPYRIGHT_END, CHARACTER_START, *d.character, CHARACTER_END,
        f"<|rating:{d.rating}|>", f"<|aspect_ratio:{d.aspect_ratio}|>", f"<|length:{d.length}|>",
        GENERAL_START, *d.general, f"<|identity:{d.identity}|>", INPUT_END,
    ]


def animagine_order(tags: list[dict]) -> list[dict]:
    """Animagine XL's order: people counts (1girl, 1boy, ...), characters, copyrights, artists, the rest.

    Stable within each group (candidates keep their rank, Dart's additions follow); first
    occurrence of a tag wins.
    """
    rank = {"people": 0, "character": 1, "copyright": 2, "artist": 3, "general": 4, "meta": 5}
    seen: set[str] = set()
    unique = []
    for t in tags:
        if t["tag"] not in seen:
            seen.add(t["tag"])
            unique.append(t)

    def group(t: dict) -> int:
        if t["tag"] in PEOPLE_TAGS:
            return rank["people"]
        return rank.get(t["category"], rank["general"])

    return sorted(unique, key=group)  # sorted() is stable


def join_prompt(tags: list[dict]) -> str:
    """The tags as the SDXL prompt, in A1111's syntax: a user's weighted `group` written back as the
    user wrote it (once, where its first tag stands), every other tag escaped, so that
    `yuuki (sao)` stays the tag and does not become a weight."""
    out, written = [], set()
    for t in tags:
        group = t.get("group")
        if group is None:
            out.append(escape(t["tag"]))
        elif group not in written:
            written.add(group)
            out.append(group)
    return ", ".join(out)
