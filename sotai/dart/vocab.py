"""dart-v2's special tokens, and how a Danbooru tag name is written for Dart and for Animagine.

The special tokens and the first ids (bos 0, eos 1, pad 2) follow p1atdev's Dart tokenizers
(`<|bos|>`, `<|eos|>`, `<|pad|>`, `<|unknown|>`, the category brackets, then the control
tokens `<|rating:*|>`, `<|aspect_ratio:*|>`, `<|length:*|>`, `<|identity:*|>`, `<|input_end|>`).
The real snapshot's tokenizer is used as it is; this list only lays out the tiny stand-in's
vocabulary and names the tokens the prompt and the sampler need.
"""

from __future__ import annotations

BOS = "<|bos|>"
EOS = "<|eos|>"
PAD = "<|pad|>"
UNK = "<|unknown|>"
COPYRIGHT_START, COPYRIGHT_END = "<copyright>", "</copyright>"
CHARACTER_START, CHARACTER_END = "<character>", "</character>"
GENERAL_START, GENERAL_END = "<general>", "</general>"
INPUT_START, INPUT_END = "<|input_start|>", "<|input_end|>"

RATINGS = ("sfw", "general", "sensitive", "nsfw", "questionable", "explicit")
ASPECT_RATIOS = ("ultra_wide", "wide", "square", "tall", "ultra_tall")
LENGTHS = ("very_short", "short", "medium", "long", "very_long")
IDENTITIES = ("none", "lax", "strict")
QUALITIES = ("best", "high", "normal", "low", "worst")

RESERVED_COUNT = 64

# Order = id: the tiny tokenizer gives token i the id i, so bos 0, eos 1, pad 2 as in dart-v2.
SPECIAL_TOKENS: tuple[str, ...] = (
    BOS, EOS, PAD, UNK,
    "<rating>", "</rating>",
    COPYRIGHT_START, COPYRIGHT_END,
    CHARACTER_START, CHARACTER_END,
    GENERAL_START, GENERAL_END,
    *(f"<|rating:{r}|>" for r in RATINGS),
    *(f"<|quality:{q}|>" for q in QUALITIES),
    *(f"<|length:{n}|>" for n in LENGTHS),
    *(f"<|aspect_ratio:{a}|>" for a in ASPECT_RATIOS),
    INPUT_START, INPUT_END,
    "<|keep_identity|>",
    *(f"<|identity:{i}|>" for i in IDENTITIES),
    *(f"<|reserved_{i}|>" for i in range(RESERVED_COUNT)),
)

# Danbooru writes tags with underscores; Dart's vocabulary and Animagine's prompts use spaces.
# Emoticon tags are the exception: their underscore is part of the picture (WD tagger's list).
KAOMOJI = frozenset({
    "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9",
    ">_o", "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||",
})

# Tags that count the people in the picture; Animagine puts them first.
PEOPLE_TAGS = frozenset({
    "1girl", "2girls", "3girls", "4girls", "5girls", "6+girls", "multiple girls",
    "1boy", "2boys", "3boys", "4boys", "5boys", "6+boys", "multiple boys",
    "1other", "2others", "3others", "4others", "5others", "6+others", "multiple others",
    "no humans",
})


def normalize_tag(tag: str) -> str:
    """A Danbooru tag name as Dart's vocabulary and Animagine write it: `long_hair` -> `long hair`."""
    tag = " ".join(tag.strip().split())
    if tag in KAOMOJI:
        return tag
    return tag.replace("_", " ")
