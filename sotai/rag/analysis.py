"""Japanese scene text -> the units a tagger thinks in (fugashi + unidic-lite).

`analyze(text)` returns:

- `spans`: candidate units, each a substring of the text: single content words (銀髪, 桜, 微笑む),
  noun compounds (ピース+サイン -> ピースサイン), modifier+noun units (長い髪, 赤いリボン, 金色の髪),
  each marked `negated` when it sits in the scope of a negation (帽子をかぶっていない, 眼鏡もなく,
  帽子なし).
- `people`: counted people (一人の少女 -> girl x1, 二人の少女 -> girl x2, 少女たち -> girl x many),
  from which the retriever derives 1girl / 2girls / multiple_girls / solo.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

# People nouns and the Danbooru sex they count as. Compounds that unidic keeps as one word
# (女子高生, 魔法少女) are matched by suffix.
_GIRL_WORDS = ("少女", "女の子", "女子", "娘", "女性", "女", "幼女", "お姉さん", "姉", "妹", "お嬢様", "令嬢",
               "メイド", "巫女", "魔女", "姫", "王女", "女王", "修道女", "シスター", "ヒロイン", "ギャル",
               "女子高生", "女学生", "女騎士", "ウェイトレス", "ナース", "アイドル")
_BOY_WORDS = ("少年", "男の子", "男子", "男性", "男", "青年", "お兄さん", "兄", "弟", "王子", "執事", "騎士",
              "男子高生", "ショタ")
_PEOPLE = tuple(sorted(((w, "girl") for w in _GIRL_WORDS), key=lambda x: -len(x[0]))) + tuple(
    sorted(((w, "boy") for w in _BOY_WORDS), key=lambda x: -len(x[0])))
_KANJI_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_KANA_COUNTS = {"ひとり": 1, "ふたり": 2}
_MANY_WORDS = ("複数", "大勢", "たくさん", "沢山", "何人", "数人", "みんな", "皆")
_PLURAL_SUFFIXES = ("たち", "達", "ら", "ども")
# Auxiliaries and words that negate what comes before them.
_NEG_AUX = {"ない", "ぬ", "ず", "ん"}
_NEG_WORDS = {"無い", "ない", "無し", "なし", "無"}
_NEG_NOUN = {"無し", "なし"}


@dataclass
class Token:
    surface: str
    lemma: str      # dictionary form (微笑ん -> 微笑む); unidic's "-english" suffix removed
    pos1: str
    pos2: str
    ctype: str
    cform: str
    start: int
    end: int
    negated: bool = False

    @property
    def is_content(self) -> bool:
        if self.pos1 in ("名詞", "形容詞", "形状詞"):
            return self.pos2 not in ("数詞",) and self.lemma not in _STOP_NOUNS and self.lemma not in _NEG_WORDS
        return self.pos1 == "動詞" and self.pos2 != "非自立可能"

    @property
    def is_noun(self) -> bool:
        return self.pos1 in ("名詞", "接頭辞") or (self.pos1 == "接尾辞" and self.pos2 == "名詞的")


# Nouns that carry no picture content (こと, もの, よう, ...).
_STOP_NOUNS = {"こと", "事", "もの", "物", "よう", "様", "ため", "為", "ところ", "所", "方", "中", "上", "前",
               "後", "時", "際", "感じ", "風", "なし", "無し", "的"}


@dataclass
class Span:
    text: str
    start: int
    end: int
    kind: str                  # word | compound | modified | phrase
    lemma: str = ""            # dictionary form of a single word; the text otherwise
    parts: tuple[str, ...] = ()  # (modifier lemma, noun lemma) of a modified unit
    negated: bool = False


@dataclass
class Person:
    sex: str                   # girl | boy
    count: int | None          # None = "several" (少女たち, 複数の少女)
    span: str


@dataclass
class Analysis:
    text: str
    tokens: list[Token]
    spans: list[Span] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    negations: list[str] = field(default_factory=list)  # the negated phrases, for reasons


@lru_cache(maxsize=1)
def _tagger():
    import fugashi

    return fugashi.Tagger()


def tokenize(text: str) -> list[Token]:
    out, pos = [], 0
    for w in _tagger()(text):
        start = text.find(w.surface, pos)
        if start < 0:  # unidic normalised the surface; fall back to the running position
            start = pos
        end = start + len(w.surface)
        pos = end
        f = w.feature
        lemma = getattr(f, "orthBase", None) or getattr(f, "lemma", None) or w.surface
        if lemma == "*":
            lemma = w.surface
        lemma = lemma.split("-")[0] if "-" in lemma and not lemma.startswith("-") else lemma
        out.append(Token(w.surface, lemma, f.pos1, f.pos2 or "", f.cType or "", f.cForm or "", start, end))
    return out


def analyze(text: str) -> Analysis:
    text = unicodedata.normalize("NFKC", text)
    tokens = tokenize(text)
    a = Analysis(text, tokens)
    _mark_negation(a)
    a.spans = _spans(text, tokens)
    a.people = _people(text, tokens)
    return a


# -- negation ------------------------------------------------------------

def _is_boundary(t: Token) -> bool:
    return (t.pos1 in ("補助記号", "記号") or (t.pos1 == "助詞" and t.pos2 == "係助詞" and t.lemma == "は")
            or (t.pos1 == "助詞" and t.pos2 == "接続助詞" and t.lemma not in ("て", "で"))
            or (t.pos1 == "助動詞" and t.lemma == "だ"))


def _mark_negation(a: Analysis) -> None:
    """Mark the tokens a negation word governs.

    From the negation, walk back over its predicate (verb + て/いる auxiliaries), then over the
    predicate's arguments (nouns, particles, adjectives modifying them) until a clause boundary:
    punctuation, the topic は, a conjunction, a copula, or another predicate.
    帽子をかぶっていない少女 negates 帽子 and かぶる but not 少女 (which follows).
    """
    toks = a.tokens
    for i, t in enumerate(toks):
        neg = ((t.pos1 == "助動詞" and t.lemma in _NEG_AUX and t.surface != "ん" or
                (t.pos1 == "助動詞" and t.surface == "ん" and i > 0 and toks[i - 1].pos1 == "動詞"))
               or (t.pos1 == "形容詞" and t.lemma in _NEG_WORDS)
               or (t.pos1 == "名詞" and t.lemma in _NEG_NOUN))
        if not neg:
            continue
        j = i - 1
        # 1. the predicate chain: auxiliaries, て, non-independent verbs, then the main verb.
        in_predicate = t.pos1 == "助動詞"
        while in_predicate and j >= 0:
            p = toks[j]
            if p.pos1 == "助動詞" or (p.pos1 == "助詞" and p.pos2 == "接続助詞" and p.lemma in ("て", "で")) \
                    or (p.pos1 == "動詞" and p.pos2 == "非自立可能"):
                j -= 1
                continue
            if p.pos1 in ("動詞", "形容詞", "形状詞"):
                p.negated = True
                j -= 1
            break
        # 2. its arguments, back to the clause boundary.
        while j >= 0:
            p = toks[j]
            if _is_boundary(p) or p.pos1 == "動詞" or (p.pos1 == "形容詞" and not p.cform.startswith("連体")):
                break
            if p.pos1 == "助詞" and p.lemma == "が" and j > 0 and toks[j - 1].is_noun and _is_subject_person(toks[j - 1]):
                break  # 少女が帽子をかぶっていない: the subject is not negated
            p.negated = True
            j -= 1
        start = toks[j + 1].start if j + 1 <= i else t.start
        a.negations.append(a.text[start:t.end])


def _is_subject_person(t: Token) -> bool:
    return any(t.lemma.endswith(w) for w, _ in _PEOPLE)


# -- spans ----------------------------------------------------------------

def _spans(text: str, toks: list[Token]) -> list[Span]:
    spans: list[Span] = []
    n = len(toks)
    for i, t in enumerate(toks):
        if t.is_content:
            spans.append(Span(t.surface, t.start, t.end, "word", lemma=t.lemma, negated=t.negated))
    # Noun compounds: runs of nouns / prefixes / nominal suffixes written together (ピース+サイン).
    i = 0
    while i < n:
        j = i
        while j < n and toks[j].is_noun and toks[j].pos2 != "数詞" and toks[j].pos1 != "助詞":
            j += 1
        if j - i >= 2:
            spans.append(Span(text[toks[i].start:toks[j - 1].end], toks[i].start, toks[j - 1].end, "compound",
                              lemma=text[toks[i].start:toks[j - 1].end],
                              parts=(toks[i].lemma, toks[i + 1].lemma) if j - i == 2 else (),
                              negated=any(toks[k].negated for k in range(i, j))))
        i = max(j, i + 1)
    # Modifier + noun: adjective (連体形) or adjectival noun + な, or noun + の + noun.
    for i in range(n - 1):
        m = toks[i]
        if m.pos1 == "形容詞" and m.cform.startswith("連体") and toks[i + 1].is_noun:
            head = _noun_run_end(toks, i + 1)
            spans.append(_modified(text, toks, i, i + 1, head))
        elif m.pos1 == "形状詞" and i + 2 < n and toks[i + 1].surface == "な" and toks[i + 2].is_noun:
            spans.append(_modified(text, toks, i, i + 2, _noun_run_end(toks, i + 2)))
        elif (m.is_noun and m.is_content and toks[i + 1].surface == "の" and i + 2 < n and toks[i + 2].is_noun
              and toks[i + 2].is_content):
            spans.append(_modified(text, toks, i, i + 2, _noun_run_end(toks, i + 2), kind="phrase"))
    # The same text from two rules: keep the first (word before compound before modified).
    seen, unique = set(), []
    for s in spans:
        if (s.start, s.end) not in seen:
            seen.add((s.start, s.end))
            unique.append(s)
    return unique


def _noun_run_end(toks: list[Token], k: int) -> int:
    """Index of the last token of the noun run starting at k (赤い[リボン] / 長い[髪] / 黒い[猫耳])."""
    while k + 1 < len(toks) and toks[k + 1].is_noun and toks[k + 1].pos2 != "数詞":
        k += 1
    return k


def _modified(text: str, toks: list[Token], m: int, h0: int, h1: int, kind: str = "modified") -> Span:
    head = "".join(t.surface for t in toks[h0:h1 + 1])
    head_lemma = head if h1 > h0 else toks[h0].lemma
    return Span(text[toks[m].start:toks[h1].end], toks[m].start, toks[h1].end, kind,
                lemma=text[toks[m].start:toks[h1].end], parts=(toks[m].lemma, head_lemma),
                negated=any(t.negated for t in toks[m:h1 + 1]))


# -- people and counts ------------------------------------------------------

def _number(s: str) -> int | None:
    s = s.strip()
    if s in _KANA_COUNTS:
        return _KANA_COUNTS[s]
    if s.isdigit():
        return int(s)
    if s and all(c in _KANJI_DIGITS for c in s):
        if s == "十":
            return 10
        if len(s) == 1:
            return _KANJI_DIGITS[s]
        if len(s) == 2 and s[0] == "十":
            return 10 + _KANJI_DIGITS[s[1]]
    return None


_COUNT_RE = re.compile(r"(?P<num>[0-9０-９]+|[一二三四五六七八九十]+|ひとり|ふたり)(?:人|名)?")


def _people(text: str, toks: list[Token]) -> list[Person]:
    people: list[Person] = []
    for i, t in enumerate(toks):
        if t.pos1 not in ("名詞",) or t.negated:
            continue
        sex = next((s for w, s in _PEOPLE if t.lemma == w or (len(t.lemma) > len(w) and t.lemma.endswith(w))), None)
        if sex is None:
            continue
        count: int | None = 1
        start = t.start
        # A count before it: 二人の少女 / 3人の女の子 / ふたりの少女 / 複数の少女
        k = i - 1
        if k >= 1 and toks[k].surface == "の":
            k -= 1
        window = "".join(x.surface for x in toks[max(0, k - 1):k + 1]) if k >= 0 and k < i else ""
        m = _COUNT_RE.fullmatch(window) or (k >= 0 and _COUNT_RE.fullmatch(toks[k].surface))
        if m and k < i:
            n = _number(m.group("num"))
            if n is not None:
                count = n
                start = toks[max(0, k - 1)].start if _COUNT_RE.fullmatch(window) else toks[k].start
        elif k >= 0 and k < i and toks[k].lemma in _MANY_WORDS:
            count, start = None, toks[k].start
        end = t.end
        # A plural suffix after it: 少女たち
        if i + 1 < len(toks) and toks[i + 1].pos1 == "接尾辞" and toks[i + 1].surface in _PLURAL_SUFFIXES:
            end = toks[i + 1].end
            if count == 1:
                count = None
        people.append(Person(sex, count, text[start:end]))
    return people
