"""Every setting a user can give jobqueue, declared once.

A ``Setting`` carries its name (the Python keyword; with dashes, the command-line option),
its environment variable, its kind and unit, its default, its bounds and its help. From
that one declaration come the ``jobqueue worker`` options, the reading of the environment,
the defaults of ``WorkerConfig`` (so a worker built in code behaves like the command's),
the checks of values passed in code, and the README's settings table (``jobqueue settings
--markdown``; a test fails when the README drifts from it). Plugins declare theirs the same
way and publish them through the ``jobqueue.settings`` entry point.

Durations are seconds everywhere: in code, on the command line and in the environment. A
command-line or environment value may carry a unit (``500ms``, ``30s``, ``5m``, ``2h``,
``7d``); a bare number is seconds. The bounds are there to catch a value given in the wrong
unit (the seed's milliseconds, say ``poll_interval=5000``): it is refused with a message
that names the unit and the value meant.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import math
import os
import re
import typing


class SettingError(ValueError):
    """A setting's value is unusable; the message names the setting, its source and unit."""


class Kind(enum.Enum):
    TEXT = "text"
    INTEGER = "integer"
    DURATION = "duration"  # seconds
    FLAG = "flag"
    LIST = "list"  # comma-separated in the environment
    CHOICE = "choice"


_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_SECONDS_PER: typing.Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_TRUE: typing.Final = frozenset({"1", "true", "yes", "on"})
_FALSE: typing.Final = frozenset({"0", "false", "no", "off"})


def parse_duration(text: str) -> float:
    """``"5m"``, ``"30s"``, ``"1.5h"``, ``"500ms"``, ``"7d"``; a bare number is seconds."""
    match = _DURATION.match(text)
    if not match:
        raise SettingError(
            f"invalid duration {text!r}: use seconds, or a number with ms, s, m, h or d"
            " (e.g. 30s, 5m)"
        )
    return float(match["number"]) * _SECONDS_PER[match["unit"] or "s"]


def format_duration(seconds: float) -> str:
    """The shortest of ``250ms``, ``30s``, ``5m``, ``2h``, ``7d`` that says ``seconds``."""
    if seconds == 0:
        return "0"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _SECONDS_PER[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting. ``default`` is the value in its Python form (seconds for a duration);
    ``None`` means unset, and ``unset`` says what that means. ``minimum``/``maximum`` bound
    numbers; ``zero`` is the meaning of 0 when 0 is allowed below ``minimum`` (e.g. "off")."""

    name: str
    env: str
    kind: Kind
    help: str
    default: object = None
    group: str = "worker"
    minimum: float | None = None
    maximum: float | None = None
    zero: str | None = None
    choices: tuple[str, ...] = ()
    unset: str = "none"
    cli: bool = True  # False: the environment and code only
    option_name: str | None = None  # when the option is not the name with dashes

    @property
    def option(self) -> str:
        return "--" + (self.option_name or self.name.replace("_", "-"))

    def describe_option(self) -> str:
        if not self.cli:
            return ""
        if self.kind is Kind.FLAG:
            return f"`{self.option}`, `--no-{self.option[2:]}`"
        return f"`{self.option}`"

    @property
    def unit(self) -> str | None:
        return "seconds" if self.kind is Kind.DURATION else None

    def describe_default(self) -> str:
        if self.default is None or self.default == ():
            return self.unset
        if self.kind is Kind.DURATION:
            return format_duration(typing.cast(float, self.default))
        if self.kind is Kind.FLAG:
            return "on" if self.default else "off"
        if self.kind is Kind.LIST:
            return ",".join(typing.cast(collections.abc.Sequence[str], self.default))
        return str(self.default)

    # --- reading -------------------------------------------------------------------------

    def parse(self, text: str) -> typing.Any:
        """A value given as text (an option or an environment variable), checked."""
        if self.kind is Kind.DURATION:
            value: object = parse_duration(text)
        elif self.kind is Kind.INTEGER:
            value = _parse_integer(text)
        elif self.kind is Kind.FLAG:
            value = _parse_flag(text)
        elif self.kind is Kind.LIST:
            value = [item.strip() for item in text.split(",") if item.strip()]
        else:
            value = text
        return self.check(value)

    def from_env(self, environ: collections.abc.Mapping[str, str] | None = None) -> typing.Any:
        """The value the environment gives, else the default."""
        text = (os.environ if environ is None else environ).get(self.env)
        if text is None or (text.strip() == "" and self.kind is not Kind.TEXT):
            return self.default
        try:
            return self.parse(text)
        except SettingError as error:
            message = str(error)
            if message.startswith(repr(text)):  # "'lots' is not a whole number"
                raise SettingError(f"{self.env}={message}") from None
            raise SettingError(f"{self.env}={text!r}: {message}") from None

    def check(self, value: object) -> typing.Any:
        """``value`` as given in code, checked against the kind and the bounds; returned in
        its normal form (a duration as a float). ``None`` stands for the default."""
        if value is None:
            return self.default
        if self.kind in (Kind.DURATION, Kind.INTEGER):
            return self._check_number(value)
        if self.kind is Kind.FLAG:
            if not isinstance(value, bool):
                raise SettingError(f"{self.name} must be True or False, not {value!r}")
            return value
        if self.kind is Kind.LIST:
            if isinstance(value, str) or not isinstance(value, collections.abc.Iterable):
                raise SettingError(f"{self.name} must be a list of names, not {value!r}")
            return list(value)
        if not isinstance(value, str):
            raise SettingError(f"{self.name} must be text, not {type(value).__name__}")
        if self.choices and value not in self.choices:
            raise SettingError(
                f"{self.name} must be one of {', '.join(self.choices)}, not {value!r}"
            )
        return value

    def _check_number(self, value: object) -> float | int:
        integer = self.kind is Kind.INTEGER
        if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
            wanted = "a whole number" if integer else "a number of seconds"
            raise SettingError(f"{self.name} must be {wanted}, not {value!r}")
        number = value if integer else float(value)
        if not math.isfinite(number):
            raise SettingError(f"{self.name} must be finite, not {value!r}")
        if number == 0 and self.zero is not None:
            return number
        unit = " s" if self.kind is Kind.DURATION else ""
        if self.minimum is not None and number < self.minimum:
            raise SettingError(
                f"{self.name} is {number:g}{unit}, below the least allowed, {self.minimum:g}{unit}"
                + (f" (or 0: {self.zero})" if self.zero else "")
                + self._unit_hint(number)
            )
        if self.maximum is not None and number > self.maximum:
            raise SettingError(
                f"{self.name} is {number:g}{unit}, above the most allowed, {self.maximum:g}{unit}"
                + self._unit_hint(number)
            )
        return number

    def _unit_hint(self, number: float) -> str:
        if self.kind is not Kind.DURATION:
            return ""
        hint = "; the unit is seconds"
        seconds = number / 1000
        if self.within_bounds(seconds):
            hint += f" (for {number:g} ms, give {seconds:g})"
        return hint

    def within_bounds(self, number: float) -> bool:
        return (self.minimum is None or number >= self.minimum) and (
            self.maximum is None or number <= self.maximum
        )


def _parse_integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise SettingError(f"{text!r} is not a whole number") from None


def _parse_flag(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingError(f"{text!r} is not a boolean: use true or false")


# --- the core's settings ----------------------------------------------------------------------

DAY: typing.Final = 86_400.0

DATABASE_URL = Setting(
    "database_url",
    "DATABASE_URL",
    Kind.TEXT,
    "PostgreSQL URL or key/value string",
    group="database",
    unset="none: required",
)
POOL_SIZE = Setting(
    "pool_size",
    "JOBQUEUE_POOL_SIZE",
    Kind.INTEGER,
    "most connections a pool opens",
    group="database",
    minimum=1,
    maximum=1000,
    unset="10; a worker's: concurrency + 3, at most 20",
)
PREPARED_STATEMENTS = Setting(
    "prepared_statements",
    "JOBQUEUE_PREPARED_STATEMENTS",
    Kind.FLAG,
    "let the driver prepare the statements it runs often; off behind PgBouncer in"
    " transaction mode before 1.21, which cannot keep them",
    default=True,
    group="database",
    cli=False,
)
POOL_TIMEOUT = Setting(
    "pool_timeout",
    "JOBQUEUE_POOL_TIMEOUT",
    Kind.DURATION,
    "how long a call waits for a free connection before it fails",
    default=5.0,
    group="database",
    minimum=0.1,
    maximum=600.0,
)
CONNECT_TIMEOUT = Setting(
    "connect_timeout",
    "JOBQUEUE_CONNECT_TIMEOUT",
    Kind.DURATION,
    "how long a new connection may take (unless the URL sets connect_timeout)",
    default=10.0,
    group="database",
    minimum=1.0,
    maximum=600.0,
    cli=False,
)
QUEUE = Setting(
    "queue",
    "JOBQUEUE_QUEUE",
    Kind.TEXT,
    "the queue to work on",
    default="default",
)
CONCURRENCY = Setting(
    "concurrency",
    "JOBQUEUE_CONCURRENCY",
    Kind.INTEGER,
    "jobs run at once",
    default=2,
    minimum=1,
    maximum=10_000,
)
POLL_INTERVAL = Setting(
    "poll_interval",
    "JOBQUEUE_POLL_INTERVAL",
    Kind.DURATION,
    "fallback poll (jittered); NOTIFY wakes the worker at once",
    default=5.0,
    minimum=0.01,
    maximum=600.0,
)
WORKER_ID = Setting(
    "worker_id",
    "JOBQUEUE_WORKER_ID",
    Kind.TEXT,
    "this worker's name, recorded in locked_by",
    unset="hostname-random",
)
TYPES = Setting(
    "types",
    "JOBQUEUE_TYPES",
    Kind.LIST,
    "claim only these job types (comma-separated); never a type without a handler",
    unset="every registered type",
)
IMPORTS = Setting(
    "imports",
    "JOBQUEUE_IMPORTS",
    Kind.LIST,
    "modules that register handlers (comma-separated; the option is repeatable)",
    default=(),
    option_name="import",
)
PLUGINS = Setting(
    "plugins",
    "JOBQUEUE_PLUGINS",
    Kind.FLAG,
    "load the installed plugins' handlers; off: only the imported modules'",
    default=True,
)
BURST = Setting(
    "burst",
    "JOBQUEUE_BURST",
    Kind.FLAG,
    "exit 0 once no job is ready (batch runs, CI)",
    default=False,
)
LISTEN = Setting(
    "listen",
    "JOBQUEUE_LISTEN",
    Kind.FLAG,
    "LISTEN for new jobs and use prepared statements; off: poll only (PgBouncer in"
    " transaction mode without a listen_url)",
    default=True,
)
LISTEN_URL = Setting(
    "listen_url",
    "JOBQUEUE_LISTEN_URL",
    Kind.TEXT,
    "the server's own URL for the worker's LISTEN connection, when database_url goes"
    " through PgBouncer in transaction mode (which passes no notifications); the pool then"
    " prepares no statements",
    unset="database_url",
)
HEARTBEAT_INTERVAL = Setting(
    "heartbeat_interval",
    "JOBQUEUE_HEARTBEAT_INTERVAL",
    Kind.DURATION,
    "refresh running jobs' heartbeats this often",
    default=15.0,
    minimum=0.01,
    maximum=3600.0,
)
GRACE_TIMEOUT = Setting(
    "grace_timeout",
    "JOBQUEUE_GRACE_TIMEOUT",
    Kind.DURATION,
    "on SIGTERM, wait this long for running jobs, then hand them back",
    default=25.0,
    minimum=0.0,
    maximum=6 * 3600.0,
)
CANCEL_GRACE = Setting(
    "cancel_grace",
    "JOBQUEUE_CANCEL_GRACE",
    Kind.DURATION,
    "after a cancel request, wait this long for an async handler to stop, then stop waiting"
    " and record the job cancelled (a synchronous handler is waited for: it cannot be stopped)",
    default=10.0,
    minimum=0.0,
    maximum=3600.0,
)
JOB_TIMEOUT = Setting(
    "job_timeout",
    "JOBQUEUE_JOB_TIMEOUT",
    Kind.DURATION,
    "fail a run that takes longer, unless its handler sets its own timeout",
    minimum=0.001,
    maximum=30 * DAY,
)
STALE_THRESHOLD = Setting(
    "stale_threshold",
    "JOBQUEUE_STALE_THRESHOLD",
    Kind.DURATION,
    "a running job with no heartbeat this long is rescued; a worker that cannot write"
    " heartbeats stops its jobs at half of it; at least 6 heartbeat intervals",
    default=300.0,
    minimum=0.05,
    maximum=DAY,
)
RESCUE_INTERVAL = Setting(
    "rescue_interval",
    "JOBQUEUE_RESCUE_INTERVAL",
    Kind.DURATION,
    "how often the worker rescues its queue's stale jobs",
    default=60.0,
    minimum=0.01,
    maximum=DAY,
    zero="never",
)
SLOW_CLAIM = Setting(
    "slow_claim",
    "JOBQUEUE_SLOW_CLAIM",
    Kind.DURATION,
    "a claim slower than this (dead index entries: a long transaction holds vacuum back)"
    " makes the worker claim after its last claim's place, with a full claim now and then,"
    " until a full claim is fast again",
    default=0.05,
    minimum=0.001,
    maximum=10.0,
    zero="always",
)
MAX_BACKOFF = Setting(
    "max_backoff",
    "JOBQUEUE_MAX_BACKOFF",
    Kind.DURATION,
    "longest wait between tries while the database is away",
    default=30.0,
    minimum=0.01,
    maximum=3600.0,
)
STATS_INTERVAL = Setting(
    "stats_interval",
    "JOBQUEUE_STATS_INTERVAL",
    Kind.DURATION,
    "how often a worker folds the job-count deltas into their totals",
    default=10.0,
    minimum=0.01,
    maximum=3600.0,
)
RETRY_DELAY = Setting(
    "retry_delay",
    "JOBQUEUE_RETRY_DELAY",
    Kind.DURATION,
    "wait before a failed job's next attempt: fail_job's, and a worker's for handlers"
    " without a retry policy",
    default=30.0,
    group="queue",
    minimum=0.0,
    maximum=30 * DAY,
    cli=False,
)
METRICS_PORT = Setting(
    "metrics_port",
    "JOBQUEUE_METRICS_PORT",
    Kind.INTEGER,
    "serve /metrics, /healthz and /readyz on this port",
    group="metrics",
    minimum=1,
    maximum=65535,
    zero="any free port",
    unset="off",
)
LOG_LEVEL = Setting(
    "log_level",
    "JOBQUEUE_LOG_LEVEL",
    Kind.CHOICE,
    "info shows the seed's lines per job; warning only problems",
    default="info",
    group="logging",
    choices=("debug", "info", "warning", "error"),
)
LOG_FORMAT = Setting(
    "log_format",
    "JOBQUEUE_LOG_FORMAT",
    Kind.CHOICE,
    "text, or json: one JSON object a line",
    default="text",
    group="logging",
    choices=("text", "json"),
)

EVENT_LOOP = Setting(
    "event_loop",
    "JOBQUEUE_EVENT_LOOP",
    Kind.CHOICE,
    "the commands' event loop: uvloop (the fast extra; about a tenth less CPU per job in"
    " a worker), asyncio, or auto: uvloop when installed",
    default="auto",
    group="runtime",
    choices=("auto", "uvloop", "asyncio"),
)

CORE: typing.Final[tuple[Setting, ...]] = (
    DATABASE_URL,
    POOL_SIZE,
    POOL_TIMEOUT,
    CONNECT_TIMEOUT,
    QUEUE,
    CONCURRENCY,
    POLL_INTERVAL,
    WORKER_ID,
    TYPES,
    IMPORTS,
    PLUGINS,
    BURST,
    LISTEN,
    LISTEN_URL,
    HEARTBEAT_INTERVAL,
    GRACE_TIMEOUT,
    CANCEL_GRACE,
    JOB_TIMEOUT,
    STALE_THRESHOLD,
    RESCUE_INTERVAL,
    SLOW_CLAIM,
    MAX_BACKOFF,
    STATS_INTERVAL,
    RETRY_DELAY,
    METRICS_PORT,
    LOG_LEVEL,
    LOG_FORMAT,
    EVENT_LOOP,
)


def markdown_table(settings: collections.abc.Iterable[Setting]) -> str:
    """The README's settings table."""
    lines = [
        "| Setting | Environment | Option | Default | Unit, bounds | |",
        "|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| `{setting.name}` | `{setting.env}` | {setting.describe_option()} |"
        f" {setting.describe_default()} | {_describe_bounds(setting)} | {setting.help} |"
        for setting in settings
    )
    return "\n".join(lines)


def _describe_bounds(setting: Setting) -> str:
    parts: list[str] = []
    if setting.kind is Kind.DURATION:
        parts.append("seconds")
    if setting.minimum is not None and setting.maximum is not None:
        if setting.kind is Kind.DURATION:
            low, high = format_duration(setting.minimum), format_duration(setting.maximum)
        else:
            low, high = f"{setting.minimum:g}", f"{setting.maximum:g}"
        parts.append(f"{low} to {high}")
    if setting.zero:
        parts.append(f"0: {setting.zero}")
    if setting.choices:
        parts.append(", ".join(setting.choices))
    if setting.kind is Kind.FLAG:
        parts.append("true or false")
    return "; ".join(parts)


# Options every command takes.
COMMON: typing.Final = (DATABASE_URL, LOG_LEVEL, LOG_FORMAT, EVENT_LOOP)
# ``jobqueue worker``'s options: ``WorkerConfig``'s fields, and what the command does itself.
WORKER_COMMAND: typing.Final = (
    QUEUE,
    CONCURRENCY,
    POLL_INTERVAL,
    WORKER_ID,
    TYPES,
    IMPORTS,
    PLUGINS,
    BURST,
    LISTEN,
    LISTEN_URL,
    HEARTBEAT_INTERVAL,
    GRACE_TIMEOUT,
    JOB_TIMEOUT,
    STALE_THRESHOLD,
    RESCUE_INTERVAL,
    SLOW_CLAIM,
    MAX_BACKOFF,
    STATS_INTERVAL,
    POOL_SIZE,
    POOL_TIMEOUT,
    METRICS_PORT,
)
