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
    lemma: str      # dictionary form as written (微笑ん -> 微笑む, つない -> つなぐ)
    base: str       # unidic's kanji-normalised lemma (つなぐ -> 繋ぐ, 抱きしめる -> 抱き締める)
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
            return (self.pos2 not in ("数詞",) and self.lemma not in _STOP_NOUNS and self.lemma not in _NEG_WORDS
                    and not _COUNT_RE.fullmatch(self.lemma))
        return self.pos1 == "動詞" and self.pos2 != "非自立可能"

    @property
    def is_person(self) -> bool:
        return self.pos1 == "名詞" and person_sex(self.lemma) is not None

    @property
    def is_noun(self) -> bool:
        return self.pos1 in ("名詞", "接頭辞") or (self.pos1 == "接尾辞" and self.pos2 == "名詞的")


# Plain "girl"/"boy" words: the count tags say all they say, so they are not searched as words.
# Role nouns (メイド, 巫女, 王女, 騎士) are counted too, but also searched: they are tags themselves.
_GENERIC_PEOPLE = {"少女", "女の子", "女子", "娘", "女性", "女", "幼女", "少年", "男の子", "男子", "男性", "男", "青年",
                   "お姉さん", "お兄さん"}

# Nouns that carry no picture content (こと, もの, よう, ...).
_STOP_NOUNS = {"こと", "事", "もの", "物", "よう", "様", "ため", "為", "ところ", "所", "方", "中", "上", "前",
               "後", "下", "時", "際", "感じ", "風", "なし", "無し", "的"}


@dataclass
class Span:
    text: str
    start: int
    end: int
    kind: str                  # word | compound | modified | phrase
    lemma: str = ""            # dictionary form of a single word; the text otherwise
    parts: tuple[str, ...] = ()  # (modifier, noun) of a modified unit; (verb, object) of an action
    negated: bool = False
    alts: tuple[str, ...] = ()   # other spellings to look up (unidic's kanji lemma)
    person: bool = False         # a people noun (少女): counted, not searched
    modifier: bool = False       # an adjective that modifies a noun: searched as part of its unit only

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.text, self.lemma, *self.alts)))


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
        lemma, base = (_clean(getattr(f, name, None), w.surface) for name in ("orthBase", "lemma"))
        out.append(Token(w.surface, lemma, base, f.pos1, f.pos2 or "", f.cType or "", f.cForm or "", start, end))
    return out


def _clean(value: str | None, surface: str) -> str:
    """unidic field -> usable lemma: '*' means none; 'リボン-ribbon' carries the loan's origin, dropped."""
    if not value or value == "*":
        return surface
    return value.split("-")[0] if "-" in value and not value.startswith("-") else value


def person_sex(lemma: str) -> str | None:
    return next((sex for w, sex in _PEOPLE if lemma == w or (len(lemma) > len(w) and lemma.endswith(w))), None)


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
            modifies = (t.pos1 in ("形容詞", "形状詞") and i + 1 < n
                        and (toks[i + 1].is_noun or (toks[i + 1].surface == "な" and i + 2 < n and toks[i + 2].is_noun)))
            spans.append(Span(t.surface, t.start, t.end, "word", lemma=t.lemma, alts=(t.base,), negated=t.negated,
                              person=t.lemma in _GENERIC_PEOPLE, modifier=modifies))
    # Noun compounds: runs of nouns / prefixes / nominal suffixes written together (ピース+サイン).
    i = 0
    while i < n:
        j = i
        while j < n and toks[j].is_noun and toks[j].pos2 != "数詞":
            j += 1
        if j - i >= 2 and not (j - i == 2 and toks[i + 1].pos1 == "接尾辞" and toks[i].is_person):
            spans.append(Span(text[toks[i].start:toks[j - 1].end], toks[i].start, toks[j - 1].end, "compound",
                              lemma=text[toks[i].start:toks[j - 1].end],
                              alts=("".join(t.base for t in toks[i:j]),),
                              parts=(toks[i].lemma, toks[i + 1].lemma) if j - i == 2 else (),
                              negated=any(toks[k].negated for k in range(i, j))))
        i = max(j, i + 1)
    for i in range(n - 1):
        m = toks[i]
        # Modifier + noun: adjective (連体形), or adjectival noun + な, then a noun run.
        if m.pos1 == "形容詞" and m.cform.startswith("連体") and toks[i + 1].is_noun:
            spans.append(_unit(text, toks, i, i, i + 1, _noun_run_end(toks, i + 1)))
        elif m.pos1 == "形状詞" and i + 2 < n and toks[i + 1].surface == "な" and toks[i + 2].is_noun:
            spans.append(_unit(text, toks, i, i, i + 2, _noun_run_end(toks, i + 2)))
        # Noun run + の + noun run (ピンク色の髪, 電車の中): looser, but often one thing.
        elif m.is_noun and toks[i + 1].surface == "の" and i + 2 < n and not m.is_person and m.is_content:
            k = i
            while k > 0 and toks[k - 1].is_noun and toks[k - 1].pos2 != "数詞":
                k -= 1
            h = i + 2  # adjectives may sit between: 紫色の長い髪
            while h < n and toks[h].pos1 == "形容詞" and toks[h].cform.startswith("連体"):
                h += 1
            if h < n and toks[h].is_noun:
                head_end = _noun_run_end(toks, h)
                # 制服の少女 is a girl plus a uniform: people are counted, not phrased.
                if (toks[h].is_content or toks[h].lemma in _PLACE_HEADS) and not toks[head_end].is_person:
                    spans.append(_unit(text, toks, k, i, h, head_end, kind="phrase"))
        # Object + を + verb (傘を持つ, 翼を広げる, 手をつなぐ): actions are tagged as one thing.
        if m.is_noun and m.is_content and not m.is_person and toks[i + 1].surface == "を" and i + 2 < n \
                and toks[i + 2].pos1 == "動詞":
            k = i
            while k > 0 and toks[k - 1].is_noun and toks[k - 1].pos2 != "数詞":
                k -= 1
            v = toks[i + 2]
            obj = "".join(t.lemma for t in toks[k:i + 1])
            spans.append(Span(text[toks[k].start:v.end], toks[k].start, v.end, "action",
                              lemma=obj + "を" + v.lemma, alts=("".join(t.base for t in toks[k:i + 1]) + "を" + v.base,),
                              parts=(v.base, obj), negated=v.negated or any(t.negated for t in toks[k:i + 1])))
    # The same text from two rules: keep the first (word before compound before modified).
    seen, unique = set(), []
    for s in spans:
        if (s.start, s.end) not in seen:
            seen.add((s.start, s.end))
            unique.append(s)
    return unique


# の-phrase heads that are not content words on their own but make a place (電車の中 = train interior).
_PLACE_HEADS = {"中", "上", "下", "前", "外"}


def _noun_run_end(toks: list[Token], k: int) -> int:
    """Index of the last token of the noun run starting at k (赤い[リボン] / 長い[髪] / 黒い[猫耳])."""
    while k + 1 < len(toks) and toks[k + 1].is_noun and toks[k + 1].pos2 != "数詞":
        k += 1
    return k


def _unit(text: str, toks: list[Token], m0: int, m1: int, h0: int, h1: int, kind: str = "modified") -> Span:
    """Modifier tokens m0..m1 + head noun run h0..h1 as one span; parts = (modifier, head)."""
    def joined(a: int, b: int, attr: str) -> str:
        return toks[a].__getattribute__(attr) if a == b else "".join(t.surface for t in toks[a:b + 1])

    return Span(text[toks[m0].start:toks[h1].end], toks[m0].start, toks[h1].end, kind,
                lemma=text[toks[m0].start:toks[h1].end],
                parts=(joined(m0, m1, "lemma"), joined(h0, h1, "lemma")),
                negated=any(t.negated for t in toks[m0:h1 + 1]))


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
        if t.pos1 != "名詞" or t.negated:
            continue
        sex = person_sex(t.lemma)
        if sex is None:
            continue
        first = i  # first token of the person phrase
        # 女騎士 / 男の娘: a 女/男 prefix says the sex whatever the noun would.
        if i > 0 and toks[i - 1].pos1 == "接頭辞" and toks[i - 1].lemma in ("女", "男"):
            sex = "girl" if toks[i - 1].lemma == "女" else "boy"
            first = i - 1
        count, first = _count_before(toks, first)
        end = t.end
        # A plural suffix after it: 少女たち
        if i + 1 < len(toks) and toks[i + 1].pos1 == "接尾辞" and toks[i + 1].surface in _PLURAL_SUFFIXES:
            end = toks[i + 1].end
            if count == 1:
                count = None
        people.append(Person(sex, count, text[toks[first].start:end]))
    return people


def _count_before(toks: list[Token], first: int) -> tuple[int | None, int]:
    """The count written before a person noun (二人の少女, 3人の女の子, ふたりの少女, 複数の少女).

    Returns (count, index of the phrase's first token); count 1 when none is written,
    None for "several".
    """
    k = first - 1
    if k >= 1 and toks[k].surface == "の":
        k -= 1
    if k < 0:
        return 1, first
    for start in (k - 1, k):  # 三+人 is two tokens, 二人 one
        if start < 0:
            continue
        m = _COUNT_RE.fullmatch("".join(x.surface for x in toks[start:k + 1]))
        if m and (n := _number(m.group("num"))) is not None:
            return n, start
    if toks[k].lemma in _MANY_WORDS:
        return None, k
    return 1, first
