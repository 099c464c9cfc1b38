"""Logging set-up for the command line: the seed's plain lines, or one JSON object a line
for clusters (``--log-format json``), which log collectors parse without rules."""

from __future__ import annotations

import datetime
import json
import logging
import sys
import typing

from jobqueue import settings

LOG_FORMATS: typing.Final = settings.LOG_FORMAT.choices
LOG_LEVELS: typing.Final = settings.LOG_LEVEL.choices


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, typing.Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(*, level: str = "info", log_format: str = "text") -> None:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    verbose = level == "debug"
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if not verbose:
        # The pool logs every reconnection attempt; callers report failures themselves.
        logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
        # The embedded server narrates each pg_ctl call it makes.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
