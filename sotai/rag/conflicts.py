"""Which tags cannot stand together in one prompt: people counts, one hair/eye colour, negations.

One rule set, used twice: by the selection step (sotai.rag.select) on the RAG candidates and by
Dart (sotai.dart.completer) on the tags it adds, so Dart never writes `5girls` after `1girl, solo`,
a second hair colour, or a tag the text negated. Tag names in either spelling (`long_hair` or
`long hair`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Exclusive families: one member per person (a picture of one girl has one hair colour).
_COLOURS = ("black|blonde|brown|red|blue|green|pink|purple|white|grey|gray|silver|orange|aqua|yellow|"
            "light_brown|light_blue|dark_blue|light_purple|dark_green|light_green|platinum_blonde|dark_brown|"
            "light_pink|dark_pink|dark_red|dark_purple|dark_grey|light_grey")
FAMILIES: dict[str, re.Pattern] = {
    "hair colour": re.compile(rf"^({_COLOURS})_hair$"),
    "eye colour": re.compile(rf"^({_COLOURS})_eyes$"),
    "hair length": re.compile(r"^(absurdly_long|very_long|long|medium|short|very_short)_hair$"),
}
# Tags that say the one person has two members of a family (two-tone hair, odd eyes).
MULTI: dict[str, frozenset[str]] = {
    "hair colour": frozenset({"multicolored_hair", "two-tone_hair", "gradient_hair", "streaked_hair",
                              "colored_inner_hair", "split-color_hair"}),
    "eye colour": frozenset({"heterochromia"}),
}

_COUNT = re.compile(r"^(?:(?P<n>[1-5])(?P<sex>girl|boy|other)s?|6\+(?P<sex6>girl|boy|other)s|"
                    r"multiple_(?P<msex>girl|boy|other)s|(?P<solo>solo)|(?P<none>no_humans))$")


def key(tag: str) -> str:
    """Danbooru spelling: `long hair` -> `long_hair`."""
    return "_".join(tag.strip().split())


def family(tag: str) -> str | None:
    k = key(tag)
    return next((name for name, pattern in FAMILIES.items() if pattern.match(k)), None)


def is_count_tag(tag: str) -> bool:
    return bool(_COUNT.match(key(tag)))


def counts_agree(tags: Iterable[str]) -> bool:
    """Whether the people-count tags among `tags` describe one possible picture.

    1girl + solo, 1girl + 1boy, 2girls + multiple_girls agree; 1girl + 5girls, solo + 1boy + 1girl,
    multiple_girls + 1girl (and no other girl count), no_humans + 1girl do not.
    """
    exact: dict[str, set[int]] = {}
    multiple: set[str] = set()
    solo = no_humans = False
    for t in tags:
        m = _COUNT.match(key(t))
        if not m:
            continue
        if m["n"]:
            exact.setdefault(m["sex"], set()).add(int(m["n"]))
        elif m["sex6"]:
            exact.setdefault(m["sex6"], set()).add(6)
        elif m["msex"]:
            multiple.add(m["msex"])
        elif m["solo"]:
            solo = True
        else:
            no_humans = True
    if any(len(v) > 1 for v in exact.values()):
        return False
    n = {sex: next(iter(v)) for sex, v in exact.items()}
    if any(n.get(sex) == 1 for sex in multiple):
        return False
    if no_humans and (n or multiple or solo):
        return False
    if solo and (multiple or sum(n.values()) > 1):
        return False
    return True


def conflict(tag: str, kept: Iterable[str], *, negated: Iterable[str] = (), capacity: int = 1) -> str | None:
    """Why `tag` cannot join `kept` (a sentence naming the tag it clashes with), or None.

    capacity: members of an exclusive family allowed (the people the text counts); a family's
    MULTI tag in `kept` allows one more.
    """
    k = key(tag)
    kept_keys = [key(t) for t in kept]
    if k in {key(t) for t in negated}:
        return "the text negates it"
    if f"no_{k}" in kept_keys:
        return f"contradicts no_{k}"
    if k.startswith("no_") and k[3:] in kept_keys:
        return f"contradicts {k[3:]}"
    if is_count_tag(k) and not counts_agree([*kept_keys, k]):
        others = [t for t in kept_keys if is_count_tag(t)]
        return f"people count contradicts {', '.join(others)}"
    fam = family(k)
    if fam is not None:
        members = [t for t in kept_keys if family(t) == fam and t != k]
        allowed = max(capacity, 1) + (1 if MULTI.get(fam, frozenset()) & set(kept_keys) else 0)
        if len(members) >= allowed:
            return f"a second {fam}: {', '.join(members)}"
    return None
