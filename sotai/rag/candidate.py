"""One retrieved tag and why it was retrieved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Category = Literal["general", "artist", "copyright", "character", "meta"]
Signal = Literal["japanese_name", "alias", "gloss", "embedding"]

CATEGORIES: tuple[str, ...] = ("general", "artist", "copyright", "character", "meta")
SIGNALS: tuple[str, ...] = ("japanese_name", "alias", "gloss", "embedding")


@dataclass
class Candidate:
    """A Danbooru tag proposed for a Japanese text.

    `reason` is {"span": <the Japanese text span that caused it>, "signal": one of SIGNALS};
    a user reading the candidate list can see which words led to which tags.
    """

    tag: str
    score: float
    category: str
    reason: dict = field(default_factory=dict)
    # The best score of each signal that supports the tag (the selection step's features) and the
    # tag's post-count prior; not part of the wire form.
    evidence: dict = field(default_factory=dict, compare=False)
    prior: float = field(default=0.0, compare=False)

    def to_dict(self) -> dict:
        return {
            "tag": self.tag,
            "score": round(float(self.score), 4),
            "category": self.category,
            "reason": {"span": str(self.reason.get("span", "")), "signal": str(self.reason.get("signal", ""))},
        }
