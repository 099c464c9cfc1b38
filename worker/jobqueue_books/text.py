"""Text for the book handlers: sentences, passages and extractive summaries, in any script.

Sentence ends are found by punctuation, not by a language model: Latin and Cyrillic text
ends a sentence at ``.``, ``!``, ``?`` or ``…`` followed by a space and an upper-case letter,
digit or quote (so "e.g. this" and "3.14" stay whole); CJK text ends one at ``。！？．``
with no space needed, but not between two such marks (``！？``), and not after a closing
quote that the sentence goes on from (Japanese ``「…。」と言った``: a quoting particle or a
comma follows). A Russian line of dialogue may start with a dash (``— Да.``). A short
quotation in paired quotes or brackets (``「」『』“”«»（）《》【】``, up to
``QUOTE_CHARACTERS`` long) is never split inside, so ``「うん。もう十歳だから」`` stays one
piece. Words are runs of letters and digits, except in CJK scripts, which have no
spaces: there every character pair (bigram) counts as a term.

A summary takes the sentences whose terms are most particular to their chapter (TF-IDF
against the other chapters of the book), and keeps them in the chapter's order.
"""

from __future__ import annotations

import collections
import math
import re
import typing

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_WORD = re.compile(rf"[^\W\d_{_CJK}][^\W_{_CJK}]*(?:['’][^\W_{_CJK}]+)*|\d+(?:[.,]\d+)*")
# A sentence ends after Western punctuation (maybe closed by a quote or bracket) followed by
# space and something that can start a sentence, or after CJK punctuation, space or not.
# Lookbehinds only, so the split keeps every character.
_WESTERN_END = r"(?:(?<=[.!?…])|(?<=[.!?…][”\"'’»)\]]))"
_CJK_ENDS = "。！？．"
_CJK_CLOSERS = '”」』）】〉》’"'
# After a closing quote, Japanese goes on with a quoting particle: 「…。」と言った, 「…」って.
_QUOTE_GOES_ON = "とっ、，,"
_SENTENCE_END = re.compile(
    _WESTERN_END
    + r"\s+(?=(?:[\"'“‘«(\[]|—\s)?[A-ZА-ЯЁ0-9"
    + _CJK
    + r"])"
    # CJK: after an end mark, unless another end mark or a closer follows...
    + f"|(?<=[{_CJK_ENDS}])\\s*(?=[^\\s{_CJK_ENDS}{_CJK_CLOSERS}])"
    # ...and after an end mark and a closer, unless the sentence goes on (と, って, 、).
    + f"|(?<=[{_CJK_ENDS}][{_CJK_CLOSERS}])\\s*(?=[^\\s{_CJK_ENDS}{_CJK_CLOSERS}{_QUOTE_GOES_ON}])"
)
# What a CJK sentence ends with: no space goes after it when sentences are joined. The
# quotes ” and ’ close Western sentences too, so they count only after a CJK end mark.
_CJK_SENTENCE_TAIL = re.compile(f"(?:[{_CJK_ENDS}」』）】〉》]|[{_CJK_ENDS}][”’])$")
# Paired quotes and brackets whose inside is never split, if the pair closes within
# QUOTE_CHARACTERS: a longer quotation (a whole speech) is split as usual.
_PAIRS: typing.Final = {
    "「": "」",
    "『": "』",
    "“": "”",
    "«": "»",
    "（": "）",
    "《": "》",
    "【": "】",
}
QUOTE_CHARACTERS: typing.Final = 200
_PARAGRAPH = re.compile(r"\n\s*\n")
_SPACE = re.compile(r"\s+")
SUMMARY_SENTENCES: typing.Final = 3
PASSAGE_WORDS: typing.Final = 120


def words(text: str) -> list[str]:
    """Terms of ``text``: lower-cased words, and CJK characters one by one."""
    found = [word.lower() for word in _WORD.findall(text)]
    return found + _CJK_CHAR.findall(text)


def word_count(text: str) -> int:
    """Words for Latin or Cyrillic text, characters for CJK (the usual count there)."""
    return len(words(text))


def terms(text: str) -> list[str]:
    """What sentences are compared by: words, and CJK character bigrams."""
    found = [word.lower() for word in _WORD.findall(text)]
    for run in re.findall(f"[{_CJK}]+", text):
        found += [run[i : i + 2] for i in range(max(len(run) - 1, 1))]
    return found


def _quotations(text: str) -> list[tuple[int, int]]:
    """``(open, close)`` positions of the short paired quotations in ``text``, outermost
    first; an opener never closed, or closed too far away, makes none."""
    found: list[tuple[int, int]] = []
    waiting: list[tuple[int, str]] = []  # open position, the closer it waits for
    for position, char in enumerate(text):
        if waiting and char == waiting[-1][1]:
            opened, _ = waiting.pop()
            if position - opened <= QUOTE_CHARACTERS:
                found.append((opened, position))
        elif char in _PAIRS:
            waiting.append((position, _PAIRS[char]))
    return found


def _split_sentences(folded: str) -> list[str]:
    quotations = _quotations(folded)
    out: list[str] = []
    start = 0
    for end in _SENTENCE_END.finditer(folded):
        if any(opened < end.start() <= closed for opened, closed in quotations):
            continue
        out.append(folded[start : end.start()])
        start = end.end()
    out.append(folded[start:])
    return [part.strip() for part in out if part.strip()]


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, whitespace folded, paragraphs never joined."""
    out: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        folded = _SPACE.sub(" ", paragraph).strip()
        if folded:
            out += _split_sentences(folded)
    return out


def join_sentences(parts: typing.Iterable[str]) -> str:
    """Sentences back into text: a space between them, except after a CJK sentence."""
    out = ""
    for part in parts:
        if out and not _CJK_SENTENCE_TAIL.search(out):
            out += " "
        out += part
    return out


def passages(text: str, target_words: int = PASSAGE_WORDS) -> list[str]:
    """Split a chapter into passages of about ``target_words`` words, at sentence ends;
    a passage never spans two paragraphs unless both are short."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in _PARAGRAPH.split(text):
        for sentence in sentences(paragraph):
            count = word_count(sentence)
            if current and size + count > target_words:
                out.append(join_sentences(current))
                current, size = [], 0
            current.append(sentence)
            size += count
        if size >= target_words / 2:
            out.append(join_sentences(current))
            current, size = [], 0
    if current:
        out.append(join_sentences(current))
    return out


def summarize(
    chapter: str, others: typing.Sequence[str] = (), count: int = SUMMARY_SENTENCES
) -> str:
    """An extractive summary: the ``count`` sentences of ``chapter`` whose terms are most
    particular to it (TF-IDF over ``others``, the book's other chapters), in order."""
    candidates = sentences(chapter)
    if len(candidates) <= count:
        return join_sentences(candidates)
    documents = [set(terms(other)) for other in others]
    chapter_terms = collections.Counter(terms(chapter))
    total = len(documents) + 1

    def weight(term: str) -> float:
        seen_in = 1 + sum(1 for document in documents if term in document)
        return (1 + math.log(chapter_terms[term])) * math.log(1 + total / seen_in)

    def score(sentence: str) -> float:
        sentence_terms = set(terms(sentence))
        if not sentence_terms:
            return 0.0
        # Divided by the square root of the length: long sentences are not favoured
        # just for being long, nor very short ones for being short.
        return sum(weight(term) for term in sentence_terms) / math.sqrt(len(sentence_terms))

    ranked = sorted(range(len(candidates)), key=lambda i: (-score(candidates[i]), i))
    chosen = sorted(ranked[:count])
    return join_sentences(candidates[i] for i in chosen)


_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LETTER = re.compile(r"[^\W\d_]")
_CJK_LANGUAGES: typing.Final = ("ja", "ko", "zh")


def cjk_language(text: str) -> str | None:
    """``ja``, ``ko`` or ``zh`` when ``text`` is mostly written in that script (kana means
    Japanese, hangul Korean, Han alone Chinese); ``None`` otherwise."""
    cjk = len(_CJK_CHAR.findall(text))
    if not cjk or cjk < 0.3 * len(_LETTER.findall(text)):
        return None
    kana, hangul = len(_KANA.findall(text)), len(_HANGUL.findall(text))
    if hangul > cjk / 2:
        return "ko"
    return "ja" if kana > cjk / 20 else "zh"


def checked_language(declared: str | None, text: str) -> str | None:
    """The declared language, unless the text is plainly in a CJK language the declaration
    does not name (converters often write ``en`` into every book they make)."""
    found = cjk_language(text)
    if found is None:
        return declared
    primary = (declared or "").split("-")[0].split("_")[0].lower()
    return declared if primary in _CJK_LANGUAGES else found
