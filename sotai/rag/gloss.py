"""JMdict glosses as a bridge from Japanese words to English tag names.

At index build time every English gloss in JMdict (via jamdict-data's SQLite file) is turned into
the tag names it could stand for (``cherry blossom`` -> ``cherry_blossoms``, ``to sit`` ->
``sitting``) and kept only when such a tag (or alias) exists in the table. The result is a small
table ``word -> tag row`` stored with the index, so a query needs no dictionary access.

JMdict is (c) the Electronic Dictionary Research and Development Group, used under CC BY-SA 4.0.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from pathlib import Path

import pandas as pd

# kind "full": the whole gloss spells tag `row` (桜 -> cherry blossom -> cherry_blossoms).
# kind "head": only the gloss's last word is a tag (月夜 -> moonlit night -> night); weaker.
# kind "component": row -1, `form` is one English word tag names are built from (赤い -> red,
# 髪 -> hair, 持つ -> holding); the retriever composes units from these (赤いリボン -> red_ribbon,
# 傘を持つ -> holding_umbrella).
GLOSS_COLUMNS = ["word", "row", "form", "gloss", "sense", "common", "kind"]
_MIN_COMPONENT_TAGS = 3  # an English word used in fewer general tag names is not worth composing
_MAX_WORDS = 4          # longer glosses are explanations, not names
_MAX_SENSE = 6          # later senses are rare readings of a word
_PAREN = re.compile(r"\([^)]*\)")
_LEADING = re.compile(r"^(to be |to |a |an |the |one's |someone's )")
_VOWELS = set("aeiou")


def jmdict_path() -> Path | None:
    try:
        import jamdict_data
    except ImportError:
        return None
    path = Path(jamdict_data.__file__).parent / "jamdict.db"
    return path if path.is_file() else None


def _ing(verb: str) -> set[str]:
    """English -ing forms (sit -> sitting, smile -> smiling, lie -> lying, run -> running)."""
    out = {verb + "ing"}
    if verb.endswith("ie"):
        out.add(verb[:-2] + "ying")
    elif verb.endswith("e") and not verb.endswith("ee"):
        out.add(verb[:-1] + "ing")
    if len(verb) >= 3 and verb[-1] not in _VOWELS | {"w", "x", "y"} and verb[-2] in _VOWELS and verb[-3] not in _VOWELS:
        out.add(verb + verb[-1] + "ing")
    return out


def gloss_forms(gloss: str) -> list[str]:
    """Tag-name spellings a gloss may stand for, most literal first."""
    g = _PAREN.sub("", gloss.lower()).strip(" .!?;:")
    is_verb = gloss.lower().startswith("to ")
    g = _LEADING.sub("", g).strip()
    if not g or len(g.split()) > _MAX_WORDS or not re.fullmatch(r"[a-z0-9 '\-]+", g):
        return []
    base = g.replace(" ", "_")
    forms = [base]
    if is_verb:
        # Danbooru names actions and poses with -ing (sitting, flying): those first, the bare verb
        # (fly, an insect tag) last.
        head, _, rest = base.partition("_")
        forms = sorted(f + ("_" + rest if rest else "") for f in _ing(head)) + forms
    else:
        forms += [base + "s", base + "es"]
        if base.endswith("y"):
            forms.append(base[:-1] + "ies")
    return forms


def _tag_lookup(table: pd.DataFrame) -> dict[str, int]:
    """tag name or alias -> table row; the real name wins over an alias of another tag."""
    lookup: dict[str, int] = {}
    for row, aliases in enumerate(table["aliases"]):
        for a in aliases:
            lookup.setdefault(a.lower(), row)
    for row, tag in enumerate(table["tag"]):
        lookup[tag.lower()] = row
    return lookup


def _components(table: pd.DataFrame) -> set[str]:
    """English words that general tag names are built from, e.g. red (red_ribbon), hair (long_hair)."""
    counts: dict[str, int] = defaultdict(int)
    for tag in table["tag"][table["category"] == "general"]:
        for w in set(tag.lower().split("_")):
            if w.isalpha():
                counts[w] += 1
    return {w for w, c in counts.items() if c >= _MIN_COMPONENT_TAGS}


def _component_forms(gloss: str, components: set[str]) -> list[str]:
    """One-word glosses usable as tag-name parts: red, hair; for verbs also the -ing form (holding)."""
    is_verb = gloss.lower().startswith("to ")
    g = _LEADING.sub("", _PAREN.sub("", gloss.lower()).strip(" .!?;:")).strip()
    if not g.isalpha():
        return []
    forms = ([*sorted(_ing(g)), g] if is_verb else [g])
    return [f for f in forms if f in components]


def _head_form(gloss: str) -> str | None:
    """The last word of a two- or three-word noun gloss (moonlit night -> night)."""
    if gloss.lower().startswith("to "):
        return None
    words = _LEADING.sub("", _PAREN.sub("", gloss.lower()).strip(" .!?;:")).split()
    return words[-1] if 2 <= len(words) <= 3 and words[-1].isalpha() else None


def build_gloss_table(table: pd.DataFrame, db: Path | None = None) -> pd.DataFrame:
    """JMdict word -> tag rows a gloss spells, and -> component words. Empty without jamdict-data."""
    db = db or jmdict_path()
    if db is None:
        return pd.DataFrame(columns=GLOSS_COLUMNS)
    lookup = _tag_lookup(table)
    general = set(table.index[table["category"] == "general"])
    components = _components(table)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        # Sense order within an entry = JMdict's order, most common meaning first.
        senses = con.execute(
            "SELECT s.idseq, s.ID, g.text FROM Sense s JOIN SenseGloss g ON g.sid = s.ID "
            "WHERE g.lang = 'eng' OR g.lang IS NULL ORDER BY s.idseq, s.ID"
        ).fetchall()
        links: dict[int, list[tuple[int, str, str, int, str]]] = defaultdict(list)
        last_seq, last_sid, n = None, None, -1
        for seq, sid, text in senses:
            if seq != last_seq:
                last_seq, n = seq, -1
            if sid != last_sid:
                last_sid, n = sid, n + 1
            if n >= _MAX_SENSE:
                continue
            full = None
            for form in gloss_forms(text):
                row = lookup.get(form)
                # Only general tags: a gloss is a common word, never a character's or artist's name.
                if row is not None and row in general:
                    full = (row, form, text, n, "full")
                    break
            if full is None and (head := _head_form(text)) is not None:
                row = lookup.get(head)
                if row is not None and row in general:
                    full = (row, head, text, n, "head")
            if full is not None:
                links[seq].append(full)
            for form in _component_forms(text, components):
                links[seq].append((-1, form, text, n, "component"))
        words: dict[int, list[tuple[str, bool]]] = defaultdict(list)
        for table_name, prio in (("Kanji", "KJP"), ("Kana", "KNP")):
            common = {kid for (kid,) in con.execute(f"SELECT DISTINCT kid FROM {prio}")}
            for kid, seq, text in con.execute(f"SELECT ID, idseq, text FROM {table_name}"):
                if seq in links:
                    words[seq].append((text, kid in common))
    finally:
        con.close()
    rows = []
    for seq, found in links.items():
        for word, common in words.get(seq, []):
            for row, form, text, n, kind in found:
                rows.append((word, row, form, text, n, common, kind))
    out = pd.DataFrame(rows, columns=GLOSS_COLUMNS)
    out = out.sort_values(["word", "sense", "common"], ascending=[True, True, False], kind="stable")
    return out.drop_duplicates(["word", "row", "form"], keep="first").reset_index(drop=True)
