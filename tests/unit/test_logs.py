"""The background log writer: every record written, in order, by the time it is closed."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid

from jobqueue import logs


def test_records_are_written_in_order_and_flushed_on_close() -> None:
    stream = io.StringIO()
    handler = logs.BackgroundHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.Logger("test-background", logging.INFO)
    logger.addHandler(handler)
    for number in range(5000):
        logger.info("[Runner] Job %d completed in %dms", number, 1)
    logger.warning("last")
    handler.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5001
    assert lines[0] == "INFO [Runner] Job 0 completed in 1ms"
    assert lines[4999] == "INFO [Runner] Job 4999 completed in 1ms"
    assert lines[-1] == "WARNING last"


def test_a_record_that_cannot_be_formatted_does_not_stop_the_writer() -> None:
    stream = io.StringIO()
    handler = logs.BackgroundHandler(stream)
    logger = logging.Logger("test-background-broken", logging.INFO)
    logger.addHandler(handler)
    raise_exceptions = logging.raiseExceptions
    logging.raiseExceptions = False  # as in production: a bad record is dropped quietly
    try:
        logger.info("%d apples", "not a number")
        logger.info("after")
        handler.close()
    finally:
        logging.raiseExceptions = raise_exceptions
    assert stream.getvalue() == "after\n"


def test_a_batch_record_gives_every_line_its_prefix() -> None:
    stream = io.StringIO()
    handler = logs.BackgroundHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    logger = logging.Logger("test-batch", logging.INFO)
    logger.addHandler(handler)
    logs.info_lines(logger, ["[Queue] Dequeued job 1", "[Queue] Dequeued job 2"])
    handler.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(" INFO ")[1] for line in lines] == [
        "[Queue] Dequeued job 1",
        "[Queue] Dequeued job 2",
    ]
    assert all(line[:4].isdigit() for line in lines)


def test_json_gives_one_object_per_line() -> None:
    import json

    record = logging.LogRecord("jobqueue.queue", logging.INFO, "", 0, "%s", None, None)
    record.args = (logs._Lines(["a", "b"]),)
    lines = logs.JsonFormatter().format(record).splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["a", "b"]
    plain = logging.LogRecord("x", logging.WARNING, "", 0, "%d jobs", (3,), None)
    assert json.loads(logs.JsonFormatter().format(plain))["message"] == "3 jobs"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_lines_logged_later_are_one_record_at_the_end_of_the_loop_turn() -> None:
    records = _Records()
    logger = logging.Logger("test-later", logging.INFO)
    logger.addHandler(records)
    seen_during_turn: list[int] = []

    async def turn() -> None:
        logs.info_later(logger, "[Runner] Executing job 1 (type: t)")
        logs.info_later(logger, "[Runner] Executing job 2 (type: t)")
        seen_during_turn.append(len(records.records))
        await asyncio.sleep(0)  # the turn ends: the lines are logged
        logs.info_later(logger, "[Runner] Job 1 completed in 0ms")
        await asyncio.sleep(0)

    asyncio.run(turn())
    assert seen_during_turn == [0]
    assert [record.getMessage().splitlines() for record in records.records] == [
        ["[Runner] Executing job 1 (type: t)", "[Runner] Executing job 2 (type: t)"],
        ["[Runner] Job 1 completed in 0ms"],
    ]


def test_a_line_logged_later_without_a_loop_is_logged_at_once() -> None:
    records = _Records()
    logger = logging.Logger("test-later-no-loop", logging.INFO)
    logger.addHandler(records)
    logs.info_later(logger, "[Runner] Executing job 1 (type: t)")
    assert [record.getMessage() for record in records.records] == [
        "[Runner] Executing job 1 (type: t)"
    ]


def test_lines_waiting_for_the_end_of_a_turn_are_logged_before_a_hard_exit() -> None:
    records = _Records()
    logger = logging.Logger("test-later-exit", logging.INFO)
    logger.addHandler(records)

    async def last_turn() -> None:
        logs.info_later(logger, "[Runner] Job 1 completed in 0ms")
        logs.log_waiting_lines()  # what the command does before os._exit
        assert [record.getMessage() for record in records.records] == [
            "[Runner] Job 1 completed in 0ms"
        ]

    asyncio.run(last_turn())
    assert len(records.records) == 1, "logged once, not again when the turn ends"


def test_a_job_ids_text_is_made_once_and_always_its_own() -> None:
    """``id_text`` keeps each id object's text: the same object gives the same string
    object back; an equal id in another object, and every id after the cache was emptied
    for being full, still gets its own text."""
    first = uuid.uuid4()
    text = logs.id_text(first)
    assert text == str(first)
    assert logs.id_text(first) is text
    twin = uuid.UUID(str(first))
    assert logs.id_text(twin) == text
    many = [uuid.uuid4() for _ in range(logs._ID_TEXTS_KEPT + 10)]
    assert [logs.id_text(job_id) for job_id in many] == [str(job_id) for job_id in many]
    assert logs.id_text(first) == str(first)
    assert len(logs._id_texts) <= logs._ID_TEXTS_KEPT
