"""Sentences, passages and summaries in Latin, Cyrillic and CJK text; the default embedder."""

from __future__ import annotations

import math

import pytest

from jobqueue_books import embedding, text


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
    ],
)
def test_sentences(paragraphs: str, expected: list[str]) -> None:
    assert text.sentences(paragraphs) == expected


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


def test_default_embedder_is_semantic_and_normalised() -> None:
    embedder = embedding.load_embedder("static")
    cat, kitten, market = embedder.embed(
        ["The cat sat on the mat.", "A kitten rested on the rug.", "Stock markets fell sharply."]
    )
    assert len(cat) == 64
    assert math.isclose(sum(value * value for value in cat), 1.0, rel_tol=1e-6)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(cat, kitten) > cosine(cat, market) + 0.2
    assert embedder.embed([]) == []


def test_embedder_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(embedding.EmbedderError, match="use static, minilm or 'module:factory'"):
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
