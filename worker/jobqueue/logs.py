"""Logging set-up for the command line: the seed's plain lines, or one JSON object a line
for clusters (``--log-format json``), which log collectors parse without rules.

The seed wants four lines per job at the default level, and writing them in the worker's
event loop (format, write, flush: a system call per line) cost half its throughput. So the
loop only hands each record to a queue; a writer thread formats whatever has gathered and
writes it in one call. Records are also made cheaper: no caller lookup (a stack walk per
line) and no thread or process names, which no format here shows. ``logging.shutdown()``
(run at exit, and before the worker's hard exit) writes what is still queued."""

from __future__ import annotations

import asyncio
import collections.abc
import datetime
import json
import logging
import queue
import sys
import threading
import time
import typing
import uuid

from jobqueue import settings

LOG_FORMATS: typing.Final = settings.LOG_FORMAT.choices
LOG_LEVELS: typing.Final = settings.LOG_LEVEL.choices


def info_lines(logger: logging.Logger, lines: collections.abc.Sequence[str]) -> None:
    """Log many lines (one per job of a batch) as one record: one record costs what one
    line does, and the formatters here give every line its own prefix (or JSON object)."""
    logger.info("%s", _Lines(lines))


def info_later(logger: logging.Logger, line: str) -> None:
    """Log ``line`` at INFO with the other lines logged so in this turn of the event loop,
    as one record made when the turn ends: the runner's two lines per job then cost a
    string each, not a record each. Without a running loop the line is logged at once."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        logger.info("%s", line)
        return
    waiting = _later.get(loop)
    if waiting is None:
        waiting = _later[loop] = {}
        loop.call_soon(_log_waiting, loop)
    lines = waiting.get(logger)
    if lines is None:
        lines = waiting[logger] = []
    lines.append(line)


def id_text(job_id: uuid.UUID) -> str:
    """``str(job_id)``, made once for each id object: a job's four lines at INFO (claimed,
    started, finished, completed) name the same ``UUID`` object, and turning one into text
    costs more than the rest of a line. Kept by object identity (an int key, where a
    ``UUID`` key would hash and compare in Python), with the object itself so that its
    identity is not reused; forgotten all at once when ``_ID_TEXTS_KEPT`` are held."""
    key = id(job_id)
    if _id_objects.get(key) is job_id:
        kept = _id_texts.get(key)  # gone if another thread's loop just emptied the cache
        if kept is not None:
            return kept
    if len(_id_texts) >= _ID_TEXTS_KEPT:
        _id_texts.clear()
        _id_objects.clear()
    text = _id_texts[key] = str(job_id)
    _id_objects[key] = job_id
    return text


# More than the jobs in flight between a claim and its completion at any concurrency a
# worker allows, so that all four lines find the text; a few MB at most. Two dicts rather
# than one of pairs: a pair a job would be one more object for the garbage collector.
_ID_TEXTS_KEPT: typing.Final = 20_000
_id_texts: dict[int, str] = {}
_id_objects: dict[int, uuid.UUID] = {}


# A plain dict, not a weak one (a tenth of a line's cost): a loop's entry lives one turn.
_later: dict[asyncio.AbstractEventLoop, dict[logging.Logger, list[str]]] = {}


def _log_waiting(loop: asyncio.AbstractEventLoop) -> None:
    for logger, lines in _later.pop(loop, {}).items():
        info_lines(logger, lines)


def log_waiting_lines() -> None:
    """Log now the lines ``info_later`` holds for the end of a loop turn: before a hard
    exit, which ends the process with no turn to come."""
    for loop in list(_later):
        _log_waiting(loop)


class _Lines:
    """The lines of a batch record; a formatter that does not know it prints them joined."""

    __slots__ = ("lines",)

    def __init__(self, lines: collections.abc.Sequence[str]) -> None:
        self.lines = lines

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _messages(record: logging.LogRecord) -> collections.abc.Sequence[str]:
    args = record.args
    if isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], _Lines):
        return args[0].lines
    return (record.getMessage(),)


class TextFormatter(logging.Formatter):
    """``2026-11-30 23:25:09,112 INFO message``: the standard layout, made without strftime
    for every line (the date part changes once a second)."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        prefix = f"{self._stamp},{int(record.msecs):03d} {record.levelname} "
        line = prefix + ("\n" + prefix).join(_messages(record))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    _ENCODER: typing.Final = json.JSONEncoder(ensure_ascii=False)

    def format(self, record: logging.LogRecord) -> str:
        base: dict[str, typing.Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        entries = [{**base, "message": message} for message in _messages(record)]
        if record.exc_info:
            entries[-1]["exception"] = self.formatException(record.exc_info)
        return "\n".join(self._ENCODER.encode(entry) for entry in entries)


class BackgroundHandler(logging.Handler):
    """Formats and writes records in a thread of its own, many at a time (see above)."""

    _BATCH: typing.Final = 10_000
    GATHER: typing.Final = 0.02  # seconds

    def __init__(self, stream: typing.TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="jobqueue-log-writer", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        self._records.put(record)

    def _write(self) -> None:
        while True:
            batch = [self._records.get()]
            # Let a batch gather: waking for every record would take the interpreter lock
            # from the event loop once a line. Lines appear at most this much later.
            time.sleep(self.GATHER)
            while len(batch) < self._BATCH:
                try:
                    batch.append(self._records.get_nowait())
                except queue.Empty:
                    break
            lines: list[str] = []
            for record in batch:
                if record is None:
                    self._flush_lines(lines)
                    return
                try:
                    lines.append(self.format(record))
                except Exception:  # a record that cannot be formatted, as logging does
                    self.handleError(record)
            self._flush_lines(lines)

    def _flush_lines(self, lines: list[str]) -> None:
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: nothing left to tell
                pass

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._writer.is_alive():
            self._records.put(None)
            self._writer.join(timeout=5)
        super().close()


def setup_logging(*, level: str = "info", log_format: str = "text") -> None:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    verbose = level == "debug"
    # Cheaper records: no stack walk for the caller, no thread and process names.
    logging._srcfile = None  # documented in the logging HOWTO ("optimization")
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for old in logging.getLogger().handlers:
        old.close()
    handler = BackgroundHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if not verbose:
        # The pool logs every reconnection attempt; callers report failures themselves.
        logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
        # The embedded server narrates each pg_ctl call it makes.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
