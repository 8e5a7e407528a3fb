"""A1111's emphasis syntax: a prompt -> pieces of text, each with the weight its tokens get.

The rules are those of the AUTOMATIC1111 web UI (`modules/prompt_parser.py`), so a prompt written
for it means the same here:

  (text)       x 1.1                  ((text)) x 1.21, and so on
  (text:1.3)   x 1.3                  [text]   / 1.1
  \\( \\) \\[ \\]  literal brackets        \\\\  a literal backslash (a lone \\ is dropped)
  BREAK        ends the 75-token chunk (only outside brackets: inside, it is the word, as in A1111)
  An unclosed ( or [ weighs everything after it; an unopened ) or ] is literal text.

Pure Python (no torch, no numpy): the client and the Dart stage split prompts with it too.
How the weights reach the text-encoder outputs: `sotai.diffusion.prompting.weighted_chunks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sotai.errors import InvalidInput

ROUND = 1.1  # ( ) multiplies by this, [ ] divides by it
BREAK = "BREAK"
BREAK_WEIGHT = -1.0  # the marker's own weight; brackets around it multiply it, which makes it a word again
_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*")
_ESCAPABLE = "()[]\\"
_WEIGHT = re.compile(r":([+-]?[.\d]+)\)")  # `:1.3)` closes a ( with an explicit weight


def _tokens(text: str):
    """(kind, value) in reading order: 'lit' text, 'open' ( or [, 'close' ) or ], 'weight' number."""
    i, n = 0, len(text)
    run = []
    while i < n:
        c = text[i]
        if c == "\\":
            nxt = text[i + 1] if i + 1 < n else ""
            if nxt in _ESCAPABLE and nxt:
                if run:
                    yield "text", "".join(run)
                    run = []
                yield "lit", nxt
                i += 2
            else:
                i += 1  # a backslash before anything else is dropped, as A1111 drops it
            continue
        if c in "()[]" or c == ":":
            if run:
                yield "text", "".join(run)
                run = []
            m = _WEIGHT.match(text, i) if c == ":" else None
            if m:
                yield "weight", m.group(1)
                i = m.end()
            elif c == ":":
                yield "text", ":"
                i += 1
            else:
                yield ("open" if c in "([" else "close"), c
                i += 1
            continue
        run.append(c)
        i += 1
    if run:
        yield "text", "".join(run)


def parse_attention(text: str, field: str = "prompt") -> list[tuple[str, float]]:
    """[(text, weight), ...] for a prompt, runs of equal weight merged; BREAK is ("BREAK", -1.0).

    `parse_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")` gives A1111's own
    documented answer: a 1.0, house 1.573, ' ' 1.1, on 1.0, ' a ' 1.1, hill 0.55, ', sun, ' 1.1,
    sky 1.4641, '.' 1.1.
    """
    pieces: list[list] = []
    rounds: list[int] = []  # where each open ( began, in pieces
    squares: list[int] = []

    def scale(start: int, factor: float) -> None:
        for p in pieces[start:]:
            p[1] *= factor

    for kind, value in _tokens(text):
        if kind == "lit":
            pieces.append([value, 1.0])
        elif kind == "open":
            (rounds if value == "(" else squares).append(len(pieces))
        elif kind == "weight" and rounds:
            try:
                weight = float(value)
            except ValueError:
                raise InvalidInput(field, f"(...:{value})", "an emphasis weight must be a number, like (tag:1.2)") from None
            scale(rounds.pop(), weight)
        elif kind == "close" and value == ")" and rounds:
            scale(rounds.pop(), ROUND)
        elif kind == "close" and value == "]" and squares:
            scale(squares.pop(), 1 / ROUND)
        else:
            # Plain text, an unmatched bracket, or `:1.2)` with no ( open: all literal.
            literal = f":{value})" if kind == "weight" else value
            for k, part in enumerate(_BREAK_SPLIT.split(literal)):
                if k:
                    pieces.append([BREAK, BREAK_WEIGHT])
                pieces.append([part, 1.0])
    # Unclosed brackets weigh everything after them, outermost first (A1111's order, so the floats agree).
    for start in rounds:
        scale(start, ROUND)
    for start in squares:
        scale(start, 1 / ROUND)

    merged: list[list] = []
    for p in pieces:
        if merged and merged[-1][1] == p[1] and not is_break(*merged[-1]) and not is_break(*p):
            merged[-1][0] += p[0]
        else:
            merged.append(list(p))
    return [(t, w) for t, w in merged] or [("", 1.0)]


def is_break(text: str, weight: float) -> bool:
    return text == BREAK and weight == BREAK_WEIGHT


def has_emphasis(text: str) -> bool:
    """True when the text uses any of the syntax (brackets, escapes or BREAK)."""
    return any(c in text for c in "()[]\\") or _BREAK_SPLIT.search(text) is not None


def plain_text(text: str) -> str:
    """The text the tokens come from, weights and BREAKs taken out (BREAK becomes a comma)."""
    return "".join(", " if is_break(t, w) else t for t, w in parse_attention(text))


def split_top_level(text: str) -> list[str]:
    """The prompt's comma-separated items, stripped; a comma inside ( ) or [ ] does not split, so
    `a, (silver hair, red eyes:1.2)` is two items. An unclosed bracket runs to the end (A1111
    weighs the rest too); an unopened one and escaped brackets do not count."""
    items, start, depth, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "([":
            depth += 1
        elif c in ")]" and depth:
            depth -= 1
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
        i += 1
    items.append(text[start:])
    return [s.strip() for s in items if s.strip()]


@dataclass(frozen=True)
class WeightedTag:
    tag: str  # the tag itself, no syntax: what Dart and tag lists read
    weight: float  # the weight of its first character (a tag's words normally share one)


def item_tags(item: str, field: str = "prompt") -> list[WeightedTag]:
    """The plain tags in one prompt item: `(silver hair, red eyes:1.2)` -> silver hair 1.2, red eyes 1.2."""
    tags, chars, weight = [], [], None

    def end() -> None:
        nonlocal chars, weight
        tag = " ".join("".join(chars).split())
        if tag:
            tags.append(WeightedTag(tag, 1.0 if weight is None else weight))
        chars, weight = [], None

    for text, w in parse_attention(item, field):
        if is_break(text, w):
            end()
            continue
        for c in text:
            if c == ",":
                end()
            else:
                if weight is None and not c.isspace():
                    weight = w
                chars.append(c)
    end()
    return tags


def escape(tag: str) -> str:
    """A literal tag written so that the parser gives it back unchanged: `yuuki (sao)` -> `yuuki \\(sao\\)`."""
    return "".join("\\" + c if c in _ESCAPABLE else c for c in tag)
