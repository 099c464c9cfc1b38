#!/usr/bin/env python3
"""Book search quality and speed: labelled questions over the sample library, per embedder.

Setup, in a scratch database: the sample library that ``jobqueue demo`` writes (two English
books rebuilt from Python's installed documentation, a Russian, a Chinese and a Japanese
one) is read and stored with ``store.save_book``, and its chapters are cut into passages
with ``text.passages``, as ``embedBook`` does.

**Quality.** For each embedder (``--embedders``, default every built-in one; one whose
package is not installed is skipped with a note) every passage is embedded and stored with
``store.save_passages``, then each question of ``QUESTIONS`` is embedded
(``embedding.embed_queries``) and searched with ``store.similar`` over the whole library:
the real path of ``jobqueue books similar``. Each question names the book its answer is in
and phrases that only the answering passages contain (written against the sample texts;
the script stops if a phrase is found in no passage, for example after a Python upgrade
changed the documentation). Reported per language and in all:

* recall@3: the share of questions with an answering passage among the first 3 results
  (each question has one answer, sometimes spread over a few passages, so this is also
  the hit rate at 3);
* MRR: the mean of 1/rank of the first answering passage in the first 10 (0 if none);
* the time to embed 100 passages (the median of ``--repeats`` runs, after a warm-up
  call; loading the model is reported apart), and the mean time to embed one question.

**Search speed.** The passages of the default embedder (or of the first one evaluated) are
copied under new book ids until the library has ``--library`` passages (default 5,000: a
library of a few dozen books), then one question is searched ``--calls`` times each way:

* ``sql``: ``store.similar``, the shipped query: the dot product of each stored ``real[]``
  with the question in SQL (``unnest`` of both arrays), sorted, the first ``limit`` joined
  to their chapter and book;
* ``sql-top-first``: the same dot product, but the best passages are chosen from
  ``book_passages`` alone before the join fetches their texts and titles;
* ``python``: every vector of that embedder fetched, the dot products in numpy, then the
  best passages' texts fetched by key.

The server is an embedded PostgreSQL (``pgserver``, in a temporary folder) unless
``DATABASE_URL`` is set. Run from the repository root::

    .venv/bin/python bench/search_eval.py
    .venv/bin/python bench/search_eval.py --embedders static,use --library 20000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import statistics
import tempfile
import time
import typing

import numpy

import _common
from jobqueue import db, migrations
from jobqueue_books import embedding, epub, samples, store, text

RESULTS: typing.Final = 10
TOP: typing.Final = 3
EN_REFERENCE: typing.Final = "python-language-reference-retold"
EN_TYPES: typing.Final = "python-builtin-types-retold"
RU: typing.Final = "smotritel-mayaka"
ZH: typing.Final = "shan-zhong-de-tu-shu-guan"
JA: typing.Final = "yuki-no-eki"


@dataclasses.dataclass(frozen=True)
class Question:
    language: str
    text: str
    book: str  # the sample's file name without ".epub", which is its book id here
    answers: tuple[str, ...]  # phrases that only the answering passages contain


def q(language: str, question: str, book: str, *answers: str) -> Question:
    return Question(language, question, book, answers)


QUESTIONS: typing.Final = (
    q(
        "en",
        "what happens when an exception is raised",
        EN_REFERENCE,
        "An exception is *raised* at the point where the error is detected",
        "The Python interpreter raises an exception when it detects a run-time error",
        "model of error handling",
        "the search for an exception handler continues",
    ),
    q(
        "en",
        "how do I re-raise the exception that is being handled",
        EN_REFERENCE,
        "re-raises the exception that is currently being handled",
    ),
    q(
        "en",
        "how can one exception be chained to another",
        EN_REFERENCE,
        "is used for exception chaining",
    ),
    q(
        "en",
        "how does Python decide which scope a name belongs to",
        EN_REFERENCE,
        "defines the visibility of a name within a block",
        "it is resolved using the nearest enclosing scope",
    ),
    q(
        "en",
        "how can a function assign to a variable at module level",
        EN_REFERENCE,
        'The "global" statement is a declaration',
    ),
    q(
        "en",
        "how do I write a small function without a name",
        EN_REFERENCE,
        "are used to create anonymous functions",
    ),
    q(
        "en",
        "why is a mutable default argument shared between calls",
        EN_REFERENCE,
        "Default parameter values are evaluated from left to right",
    ),
    q(
        "en",
        "how are keyword arguments matched to the parameters of a function",
        EN_REFERENCE,
        "If keyword arguments are present, they are first converted to positional arguments",
    ),
    q(
        "en",
        "what makes a function a generator",
        EN_REFERENCE,
        "Using yield in a function definition is sufficient",
    ),
    q(
        "en",
        "what does an assert statement do and when is it skipped",
        EN_REFERENCE,
        "Assert statements are a convenient way",
        "emits no code for an assert statement",
    ),
    q(
        "en",
        "which values count as false in an if statement",
        EN_TYPES,
        "constants defined to be false",
    ),
    q(
        "en",
        "how do I remove spaces from the start and end of a string",
        EN_TYPES,
        "Return a copy of the string with the leading and trailing characters removed",
    ),
    q(
        "en",
        "how do I read a value from a dictionary without an error when the key is missing",
        EN_TYPES,
        "get(key[, default])",
    ),
    q(
        "en",
        "why does changing one inner list change all the rows of a list made with *",
        EN_TYPES,
        "lists = [[]] * 3",
    ),
    q(
        "en",
        "how do I format a large number with commas between the thousands",
        EN_TYPES,
        "Using the comma as a thousands separator",
        "option signals the use of a comma for a thousands separator",
    ),
    q(
        "en",
        "do dictionaries keep the order in which keys were added",
        EN_TYPES,
        "Dictionaries preserve insertion order",
        "Dictionary order is guaranteed to be insertion order",
    ),
    q("ru", "Кто привозит почту на маяк?", RU, "почтальонша Вера"),
    q("ru", "Чем хочет заниматься внучка смотрителя после школы?", RU, "океанографию"),
    q("ru", "Куда смотритель повесил рисунок?", RU, "приколол его к стене"),
    q("ru", "Что смотритель делает, когда приходит туман?", RU, "включил ревун"),
    q("ru", "Что смотритель записывает ночью в журнал?", RU, "записывал в журнал"),
    q("zh", "图书馆在什么地方？", ZH, "半山腰"),
    q("zh", "门口的纸箱里装着什么？", ZH, "整整齐齐地码着几十本书"),
    q("zh", "卖豆腐的王师傅喜欢读什么书？", ZH, "王师傅"),
    q("zh", "迷路的旅人留下了什么话？", ZH, "留言簿"),
    q("zh", "下雨的夜里图书馆是什么样子？", ZH, "窗外下起了小雨"),
    q("ja", "駅長は冬の朝、最初に何をしますか？", JA, "雪かき"),
    q("ja", "女の子は誰に会いに行くのですか？", JA, "おばあさんに会いに"),
    q("ja", "列車はなぜ遅れたのですか？", JA, "大雪のため"),
    q("ja", "駅長はその夜、日誌に何と書きましたか？", JA, "日誌にこう書いた"),
)
LANGUAGES: typing.Final = ("en", "ru", "zh", "ja")


@dataclasses.dataclass(frozen=True)
class Piece:
    book_id: str
    chapter_index: int
    passage_index: int
    text: str


@dataclasses.dataclass
class Evaluation:
    embedder: str
    name: str
    dimensions: int
    load_seconds: float
    embed_seconds_per_100: float
    query_ms: float
    ranks: list[int | None]  # per question, in QUESTIONS order: 1-based, None past RESULTS
    # The stored rows by book: save_passages replaces a book's passages, so the next
    # embedder's replace these, and the speed test stores them again.
    rows: dict[str, list[tuple[int, int, str, list[float]]]] = dataclasses.field(repr=False)

    def recall(self, language: str | None = None) -> float:
        chosen = self._chosen(language)
        return sum(1 for rank in chosen if rank is not None and rank <= TOP) / len(chosen)

    def mrr(self, language: str | None = None) -> float:
        chosen = self._chosen(language)
        return sum(1 / rank for rank in chosen if rank is not None) / len(chosen)

    def _chosen(self, language: str | None) -> list[int | None]:
        return [
            rank
            for question, rank in zip(QUESTIONS, self.ranks, strict=True)
            if language in (None, question.language)
        ]


@dataclasses.dataclass
class Outcome:
    passages: int
    evaluations: list[Evaluation]
    skipped: dict[str, str]
    speed_embedder: str | None = None
    speed_passages: int = 0
    speed_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def answers(question: Question, book_id: str, passage: str) -> bool:
    return book_id == question.book and any(phrase in passage for phrase in question.answers)


async def store_library(conn: store.Connection) -> list[Piece]:
    pieces: list[Piece] = []
    with tempfile.TemporaryDirectory() as folder:
        for path in samples.write_sample_library(pathlib.Path(folder)):
            book = epub.read_epub(path)
            await store.save_book(conn, path.stem, str(path), book)
            for chapter in book.chapters:
                for number, passage in enumerate(text.passages(chapter.text)):
                    pieces.append(Piece(path.stem, chapter.index, number, passage))
    for question in QUESTIONS:
        if not any(answers(question, piece.book_id, piece.text) for piece in pieces):
            raise SystemExit(f"no passage answers {question.text!r}: its labels need updating")
    return pieces


async def evaluate(
    conn: store.Connection, spec: str, pieces: list[Piece], repeats: int
) -> Evaluation:
    started = time.perf_counter()
    embedder = embedding.load_embedder(spec)
    embedder.embed(["warm up: the first call may load the model"])
    load = time.perf_counter() - started
    texts = [piece.text for piece in pieces]
    vectors: list[list[float]] = []

    def embed_all() -> None:
        nonlocal vectors
        vectors = embedder.embed(texts)

    seconds = _common.median_seconds(embed_all, repeats)
    by_book: dict[str, list[tuple[int, int, str, list[float]]]] = {}
    for piece, vector in zip(pieces, vectors, strict=True):
        row = (piece.chapter_index, piece.passage_index, piece.text, vector)
        by_book.setdefault(piece.book_id, []).append(row)
    for book_id, rows in by_book.items():
        await store.save_passages(conn, book_id, embedder.name, rows)
    ranks: list[int | None] = []
    query_seconds = 0.0
    for question in QUESTIONS:
        started = time.perf_counter()
        (vector,) = embedding.embed_queries(embedder, [question.text])
        query_seconds += time.perf_counter() - started
        matches = await store.similar(conn, embedder.name, vector, limit=RESULTS)
        found = [answers(question, match.book_id, match.text) for match in matches]
        ranks.append(found.index(True) + 1 if True in found else None)
    return Evaluation(
        embedder=spec,
        name=embedder.name,
        dimensions=len(vectors[0]),
        load_seconds=load,
        embed_seconds_per_100=seconds * 100 / len(pieces),
        query_ms=query_seconds * 1000 / len(QUESTIONS),
        ranks=ranks,
        rows=by_book,
    )


# --- search speed: the shipped query against two alternatives -------------------------

COPY_BOOKS: typing.Final = """
INSERT INTO books (id, file_path, title, authors, language, chapter_count, word_count)
SELECT id || '#' || %(copy)s, file_path, title, authors, language, chapter_count, word_count
FROM books WHERE position('#' in id) = 0
"""
COPY_CHAPTERS: typing.Final = """
INSERT INTO book_chapters (book_id, chapter_index, title, text, word_count)
SELECT book_id || '#' || %(copy)s, chapter_index, title, text, word_count
FROM book_chapters WHERE position('#' in book_id) = 0
"""
COPY_PASSAGES: typing.Final = """
INSERT INTO book_passages (book_id, chapter_index, passage_index, text, embedder, embedding)
SELECT book_id || '#' || %(copy)s, chapter_index, passage_index, text, embedder, embedding
FROM book_passages WHERE position('#' in book_id) = 0 AND embedder = %(embedder)s
"""
SIMILAR_TOP_FIRST: typing.Final = """
WITH best AS (
    SELECT p.book_id, p.chapter_index, p.passage_index,
           (SELECT sum(stored * asked)
            FROM unnest(p.embedding, %(query)s::real[]) AS v (stored, asked)) AS score
    FROM book_passages p
    WHERE p.embedder = %(embedder)s
    ORDER BY score DESC, p.book_id, p.chapter_index, p.passage_index
    LIMIT %(limit)s
)
SELECT best.book_id, b.title, best.chapter_index, c.title, p.text, best.score
FROM best
JOIN book_passages p USING (book_id, chapter_index, passage_index)
JOIN book_chapters c ON c.book_id = best.book_id AND c.chapter_index = best.chapter_index
JOIN books b ON b.id = best.book_id
WHERE p.embedder = %(embedder)s
ORDER BY best.score DESC, best.book_id, best.chapter_index, best.passage_index
"""
ALL_VECTORS: typing.Final = """
SELECT book_id, chapter_index, passage_index, embedding FROM book_passages
WHERE embedder = %(embedder)s
"""
SOME_PASSAGES: typing.Final = """
SELECT p.book_id, b.title, p.chapter_index, c.title, p.text
FROM book_passages p
JOIN book_chapters c ON c.book_id = p.book_id AND c.chapter_index = p.chapter_index
JOIN books b ON b.id = p.book_id
WHERE p.embedder = %(embedder)s
  AND (p.book_id, p.chapter_index, p.passage_index) IN (
      SELECT * FROM unnest(%(books)s::text[], %(chapters)s::int[], %(passages)s::int[]))
"""


async def grow_library(conn: store.Connection, embedder: str, target: int, have: int) -> int:
    copies = max(0, math.ceil(target / have) - 1)
    async with conn.transaction():
        for copy in range(1, copies + 1):
            for statement in (COPY_BOOKS, COPY_CHAPTERS, COPY_PASSAGES):
                await conn.execute(statement, {"copy": copy, "embedder": embedder})
    await conn.execute("ANALYZE book_passages")
    return have * (copies + 1)


async def sql_top_first(conn: store.Connection, embedder: str, vector: list[float]) -> list[str]:
    cursor = await conn.execute(
        SIMILAR_TOP_FIRST, {"embedder": embedder, "query": vector, "limit": RESULTS}
    )
    return [row[4] for row in await cursor.fetchall()]


async def in_python(conn: store.Connection, embedder: str, vector: list[float]) -> list[str]:
    cursor = await conn.execute(ALL_VECTORS, {"embedder": embedder})
    rows = await cursor.fetchall()
    scores = numpy.array([row[3] for row in rows], dtype=numpy.float32) @ numpy.array(
        vector, dtype=numpy.float32
    )
    best = [rows[int(i)] for i in numpy.argsort(-scores, kind="stable")[:RESULTS]]
    cursor = await conn.execute(
        SOME_PASSAGES,
        {
            "embedder": embedder,
            "books": [row[0] for row in best],
            "chapters": [row[1] for row in best],
            "passages": [row[2] for row in best],
        },
    )
    found = {(row[0], row[2]): row[4] for row in await cursor.fetchall()}
    return [found[(row[0], row[1])] for row in best if (row[0], row[1]) in found]


async def search_speed(
    conn: store.Connection, evaluation: Evaluation, calls: int
) -> dict[str, float]:
    embedder = embedding.load_embedder(evaluation.embedder)
    (vector,) = embedding.embed_queries(embedder, [QUESTIONS[0].text])

    async def shipped() -> list[str]:
        matches = await store.similar(conn, evaluation.name, vector, limit=RESULTS)
        return [match.text for match in matches]

    ways: dict[str, typing.Callable[[], typing.Awaitable[list[str]]]] = {
        "sql": shipped,
        "sql-top-first": lambda: sql_top_first(conn, evaluation.name, vector),
        "python": lambda: in_python(conn, evaluation.name, vector),
    }
    medians: dict[str, float] = {}
    first: list[str] | None = None
    for way, search in ways.items():
        timings = []
        for call in range(calls + 1):
            started = time.perf_counter()
            texts = await search()
            if call:  # the first call warms the cache and is not timed
                timings.append(time.perf_counter() - started)
            if not texts:
                raise SystemExit(f"{way} found nothing")
            first = first or texts
            if texts[:1] != first[:1]:  # the copies tie; float rounding may reorder them
                raise SystemExit(f"{way} found another passage first than sql: {texts[:1]}")
        medians[way] = statistics.median(timings) * 1000
    return medians


async def run(args: argparse.Namespace, server_url: str) -> Outcome:
    async with _common.scratch_database(server_url, "jobqueue_bench_search") as url:
        conn = await db.connect(url)
        async with conn:
            await migrations.migrate(conn)
            pieces = await store_library(conn)
            outcome = Outcome(len(pieces), [], {})
            for spec in args.embedders:
                try:
                    outcome.evaluations.append(await evaluate(conn, spec, pieces, args.repeats))
                except embedding.EmbedderError as error:
                    outcome.skipped[spec] = str(error)
            if not outcome.evaluations or not args.library:
                return outcome
            default = embedding.load_embedder().name
            chosen = next(
                (e for e in outcome.evaluations if e.name == default), outcome.evaluations[0]
            )
            outcome.speed_embedder = chosen.name
            for book_id, rows in chosen.rows.items():
                await store.save_passages(conn, book_id, chosen.name, rows)
            outcome.speed_passages = await grow_library(
                conn, chosen.name, args.library, len(pieces)
            )
            outcome.speed_ms = await search_speed(conn, chosen, args.calls)
    return outcome


# --- reports ----------------------------------------------------------------------------


def report_json(args: argparse.Namespace, server: str, outcome: Outcome) -> str:
    return json.dumps(
        {
            "server": server,
            "passages": outcome.passages,
            "questions": {lang: sum(q.language == lang for q in QUESTIONS) for lang in LANGUAGES},
            "embedders": [
                {
                    "embedder": e.embedder,
                    "name": e.name,
                    "dimensions": e.dimensions,
                    "recall_at_3": {lang: e.recall(lang) for lang in LANGUAGES}
                    | {"all": e.recall()},
                    "mrr": {lang: e.mrr(lang) for lang in LANGUAGES} | {"all": e.mrr()},
                    "embed_seconds_per_100": e.embed_seconds_per_100,
                    "query_ms": e.query_ms,
                    "load_seconds": e.load_seconds,
                    "ranks": e.ranks,
                }
                for e in outcome.evaluations
            ],
            "skipped": outcome.skipped,
            "search_speed": {
                "embedder": outcome.speed_embedder,
                "passages": outcome.speed_passages,
                "median_ms": outcome.speed_ms,
            },
        },
        indent=2,
    )


def report_table(args: argparse.Namespace, server: str, outcome: Outcome) -> str:
    counts = "  ".join(f"{lang} {sum(q.language == lang for q in QUESTIONS)}" for lang in LANGUAGES)
    lines = [
        f"book search over the sample library: {outcome.passages} passages, server: {server}",
        f"{len(QUESTIONS)} questions ({counts}); recall@{TOP} and MRR (first {RESULTS})",
        "",
        f"{'embedder':<8} {'model':<26} {'dims':>4}  "
        + "  ".join(f"{lang:>9}" for lang in LANGUAGES)
        + f"  {'all':>9}  {'embed s/100':>11} {'query ms':>8} {'load s':>6}",
        f"{'':<8} {'':<26} {'':>4}  "
        + "  ".join(f"{'R@3  MRR':>9}" for _ in LANGUAGES)
        + f"  {'R@3  MRR':>9}",
    ]
    lines.append("-" * len(lines[-2]))
    for e in outcome.evaluations:
        scores = "  ".join(
            f"{e.recall(lang):4.2f} {e.mrr(lang):4.2f}" for lang in (*LANGUAGES, None)
        )
        lines.append(
            f"{e.embedder:<8} {e.name:<26} {e.dimensions:>4}  {scores}  "
            f"{e.embed_seconds_per_100:>11.2f} {e.query_ms:>8.1f} {e.load_seconds:>6.1f}"
        )
    for spec, reason in outcome.skipped.items():
        lines.append(f"{spec:<8} skipped: {reason}")
    lines.append("")
    names = " ".join(e.embedder for e in outcome.evaluations)
    lines.append(f"rank of the first answer per question ({names}; - past {RESULTS}):")
    for number, question in enumerate(QUESTIONS):
        ranks = " ".join(f"{e.ranks[number] or '-':>3}" for e in outcome.evaluations)
        lines.append(f"  {ranks}  [{question.language}] {question.text}")
    if outcome.speed_ms:
        lines.append("")
        lines.append(
            f"search speed: {outcome.speed_passages:,} passages of {outcome.speed_embedder},"
            f" first {RESULTS}, median of {args.calls} calls"
        )
        for way, ms in outcome.speed_ms.items():
            lines.append(f"  {way:<14} {ms:8.1f} ms")
    return "\n".join(lines)


def embedder_list(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--embedders",
        type=embedder_list,
        default=list(embedding.BUILT_IN),
        help=f"comma-separated (default: {','.join(embedding.BUILT_IN)}; or module:factory)",
    )
    parser.add_argument(
        "--repeats", type=_common.int_between(1, 100), default=3, help="embedding runs timed"
    )
    parser.add_argument(
        "--library",
        type=_common.int_between(0, 1_000_000),
        default=5000,
        help="passages for the search speed test (0: skip it)",
    )
    parser.add_argument(
        "--calls", type=_common.int_between(1, 10_000), default=20, help="searches timed"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return _common.main(parse_args(argv), run, report_json, report_table)


if __name__ == "__main__":
    raise SystemExit(main())
