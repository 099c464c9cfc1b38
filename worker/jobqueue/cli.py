"""The ``jobqueue`` command: migrations, queue operations and workers from a shell; installed
plugins add their own commands (the book pipeline adds ``books`` and ``demo``).

Every subcommand takes ``--database-url`` (default ``$DATABASE_URL``). A user's mistake (bad
JSON, an unknown id, an unreachable database) prints one ``jobqueue: error: ...`` line and
exits 1; argparse's own usage errors exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import dataclasses
import datetime
import importlib
import json
import logging
import os
import re
import sys
import typing

import psycopg

from jobqueue import checks, db, embedded, logs, maintenance, migrations, plugins, probes, types
from jobqueue import queue as queue_module

_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_UNIT_MS: typing.Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class UserError(Exception):
    """A mistake in what the user asked for: reported as one line, no traceback."""


def parse_duration_ms(text: str) -> float:
    """``"5m"``, ``"30s"``, ``"1.5h"``, ``"300000ms"``; a bare number is milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number with ms, s, m, h or d (e.g. 5m)"
        )
    milliseconds = float(match["number"]) * _UNIT_MS[match["unit"] or "ms"]
    if milliseconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be above zero")
    return milliseconds


def parse_json(text: str) -> typing.Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON {text[:80]!r}: {error}") from None
    except RecursionError:
        raise argparse.ArgumentTypeError(
            f"invalid JSON: nested more than {checks.MAX_JSON_DEPTH} levels deep"
        ) from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise argparse.ArgumentTypeError(f"invalid JSON: {error}") from None


def read_payload_file(path: str) -> typing.Any:
    """The JSON in a file, or on standard input for ``-``: for payloads too big for an
    argument list (about 128 KiB)."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as file:
                text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the payload from {path}: {error}") from None
    try:
        return parse_json(text)
    except argparse.ArgumentTypeError as error:
        raise UserError(f"payload in {path}: {error}") from None


def parse_aware_datetime(text: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2026-12-25T09:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"time {text!r} has no timezone: add one, e.g. +00:00 or Z"
        )
    return moment


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise UserError(f"{name}={value!r} is not a boolean: use true or false")


def whole_number(
    minimum: int, maximum: int | None = None, what: str = "number"
) -> collections.abc.Callable[[str], int]:
    """An argparse type: a whole number within bounds."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole {what}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


positive_int = whole_number(1)
port_number = whole_number(0, 65535, "port number")


def finite_number(*, allow_zero: bool) -> collections.abc.Callable[[str], float]:
    """An argparse type: a finite number above zero (or, with ``allow_zero``, zero too)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
            bound = "zero or more" if allow_zero else "above zero"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


positive_number = finite_number(allow_zero=False)
non_negative_number = finite_number(allow_zero=True)


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_worker_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``jobqueue worker``: what a worker pod runs. Each option also comes from the
    environment variable named in its help, so a Deployment can set them with ``env``."""
    worker = commands.add_parser(
        "worker", help="run a worker: claim and run jobs until stopped", parents=[common]
    )
    option = worker.add_argument
    option(
        "--queue",
        default=_env("JOBQUEUE_QUEUE", "default"),
        help="queue to work on [JOBQUEUE_QUEUE] (default: default)",
    )
    option(
        "--concurrency",
        type=positive_int,
        default=_env("JOBQUEUE_CONCURRENCY", "2"),
        help="jobs run at once [JOBQUEUE_CONCURRENCY] (default: 2)",
    )
    option(
        "--poll-interval",
        type=positive_number,
        default=_env("JOBQUEUE_POLL_INTERVAL", "5000"),
        metavar="MS",
        help="fallback poll, ms [JOBQUEUE_POLL_INTERVAL] (default: 5000)",
    )
    option(
        "--worker-id",
        default=_env("JOBQUEUE_WORKER_ID"),
        help="this worker's name [JOBQUEUE_WORKER_ID] (default: hostname-random)",
    )
    option(
        "--types",
        type=comma_list,
        default=_env("JOBQUEUE_TYPES"),
        metavar="A,B",
        help="claim only these job types [JOBQUEUE_TYPES] (default: every registered)",
    )
    option(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers handlers; repeatable"
        " [JOBQUEUE_IMPORTS, comma-separated]",
    )
    option(
        "--no-plugins",
        dest="no_plugins",
        action="store_true",
        default=None,
        help="load no plugin's handlers (not even jobqueue.noop), only the --import"
        " modules' [JOBQUEUE_NO_PLUGINS]",
    )
    option(
        "--burst",
        action="store_true",
        default=None,
        help="exit 0 once no job is ready [JOBQUEUE_BURST]",
    )
    option(
        "--no-listen",
        dest="no_listen",
        action="store_true",
        default=None,
        help="poll only, no LISTEN/NOTIFY (e.g. PgBouncer in transaction mode)"
        " [JOBQUEUE_NO_LISTEN]",
    )
    option(
        "--metrics-port",
        type=port_number,
        default=_env("JOBQUEUE_METRICS_PORT"),
        help="serve /metrics, /healthz, /readyz on this port [JOBQUEUE_METRICS_PORT]"
        " (default: off)",
    )
    option(
        "--grace-timeout",
        type=float,
        default=_env("JOBQUEUE_GRACE_TIMEOUT", "25"),
        metavar="SECONDS",
        help="on SIGTERM, wait this long for running jobs, then hand"
        " them back [JOBQUEUE_GRACE_TIMEOUT] (default: 25)",
    )
    option(
        "--heartbeat-interval",
        type=positive_number,
        default=_env("JOBQUEUE_HEARTBEAT_INTERVAL", "15"),
        metavar="SECONDS",
        help="refresh running jobs' locks this often [JOBQUEUE_HEARTBEAT_INTERVAL] (default: 15)",
    )
    option(
        "--job-timeout",
        type=positive_number,
        default=_env("JOBQUEUE_JOB_TIMEOUT"),
        metavar="SECONDS",
        help="fail a run that takes longer, unless its handler sets"
        " its own timeout [JOBQUEUE_JOB_TIMEOUT] (default: none)",
    )
    option(
        "--stale-threshold",
        type=positive_number,
        default=_env("JOBQUEUE_STALE_THRESHOLD", "300"),
        metavar="SECONDS",
        help="a running job with no heartbeat for this long is rescued; this worker stops"
        " its own jobs at half of it when it cannot write heartbeats"
        " [JOBQUEUE_STALE_THRESHOLD] (default: 300)",
    )
    option(
        "--rescue-interval",
        type=non_negative_number,
        default=_env("JOBQUEUE_RESCUE_INTERVAL", "60"),
        metavar="SECONDS",
        help="look for stale jobs of this queue this often, 0 for never"
        " [JOBQUEUE_RESCUE_INTERVAL] (default: 60)",
    )
    option(
        "--log-format",
        choices=logs.LOG_FORMATS,
        default=_env("JOBQUEUE_LOG_FORMAT", "text"),
        help="text or json [JOBQUEUE_LOG_FORMAT] (default: text)",
    )


def import_handler_modules(names: collections.abc.Iterable[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # any failure while importing user code is the user's
            raise UserError(f"cannot import handler module {name!r}: {error}") from error


async def run_worker(args: argparse.Namespace) -> int:
    from jobqueue import worker

    if not (args.no_plugins if args.no_plugins is not None else _env_flag("JOBQUEUE_NO_PLUGINS")):
        plugins.register_all_handlers()
    import_handler_modules([*comma_list(_env("JOBQUEUE_IMPORTS") or ""), *args.imports])
    config = worker.WorkerConfig(
        queue=args.queue,
        concurrency=args.concurrency,
        poll_interval=args.poll_interval,
        worker_id=args.worker_id,
        types=args.types,
        listen=not (
            args.no_listen if args.no_listen is not None else _env_flag("JOBQUEUE_NO_LISTEN")
        ),
        burst=args.burst if args.burst is not None else _env_flag("JOBQUEUE_BURST"),
        heartbeat_interval=args.heartbeat_interval,
        grace_timeout=args.grace_timeout,
        job_timeout=args.job_timeout,
        stale_threshold=args.stale_threshold,
        rescue_interval=args.rescue_interval,
    )
    running = worker.make_worker(config, database_url=args.database_url)
    running.install_signal_handlers()
    server = None
    if args.metrics_port is not None:
        server = probes.ProbeServer(running.healthy, running.ready, port=args.metrics_port)
        await server.start()
    try:
        await worker.serve(running)
    except worker.WorkerFailedError as error:
        failure: worker.WorkerFailedError | None = error
    else:
        failure = None
    finally:
        if server is not None:
            await server.close()
    if running.handler_threads_busy():
        # A cancelled synchronous handler cannot be stopped, and the interpreter would wait
        # for its thread at exit; its job is already back in the queue, so leave now.
        if failure is not None:
            print(f"jobqueue: error: {failure}", file=sys.stderr)
        logging.shutdown()
        os._exit(1 if failure else 0)
    if failure is not None:
        raise UserError(str(failure)) from failure
    return 0


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", metavar="URL", help=f"PostgreSQL URL (default: ${db.DATABASE_URL_ENV})"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument(
        "--log-level",
        choices=logs.LOG_LEVELS,
        help="info shows the seed's line per job; warning only problems"
        " [JOBQUEUE_LOG_LEVEL] (default: info)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobqueue",
        description="A job queue on PostgreSQL: migrations, queue operations, workers.",
    )
    add_common_options(parser)
    parser.set_defaults(log_level=os.environ.get("JOBQUEUE_LOG_LEVEL", "info"))
    # Subcommands accept the same options after their name; their parsers leave a value
    # unset unless given, so one given before the subcommand is not overwritten.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    add_common_options(common)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db_parser = commands.add_parser("db", help="schema migrations", parents=[common])
    db_commands = db_parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    migrate = db_commands.add_parser(
        "migrate",
        help="apply missing migrations (safe to run anywhere, any number of times)",
        parents=[common],
    )
    migrate.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print the SQL of the missing migrations (all of them without a database)",
    )
    db_commands.add_parser(
        "verify", help="exit non-zero when the schema is behind or differs", parents=[common]
    )
    prune = db_commands.add_parser(
        "prune",
        help="delete finished (done, failed) jobs older than a duration, in batches",
        parents=[common],
    )
    prune.add_argument(
        "--older-than",
        type=parse_duration_ms,
        required=True,
        metavar="DURATION",
        help="last changed longer ago than this (e.g. 7d, 12h)",
    )
    prune.add_argument("--queue", metavar="NAME", help="one queue (default: all)")
    prune.add_argument(
        "--batch-size", type=positive_int, default=1000, help="rows per statement (default 1000)"
    )

    enqueue = commands.add_parser("enqueue", help="add a job", parents=[common])
    enqueue.add_argument("type", help="job type, e.g. parseBook")
    payload = enqueue.add_mutually_exclusive_group()
    payload.add_argument("--payload", type=parse_json, metavar="JSON", help="job payload")
    payload.add_argument(
        "--payload-file",
        metavar="FILE",
        help="read the payload (JSON) from FILE, or from standard input with -",
    )
    enqueue.add_argument(
        "--run-at",
        type=parse_aware_datetime,
        metavar="ISO",
        help="not before this time (ISO 8601 with timezone)",
    )
    enqueue.add_argument("--max-attempts", type=int, metavar="N", help="default 3")
    enqueue.add_argument("--queue", metavar="NAME", help="queue name (default: default)")
    enqueue.add_argument("--priority", type=int, default=0, help="higher runs first")
    enqueue.add_argument("--json", action="store_true", help="print the job as JSON")

    status = commands.add_parser("status", help="show one job", parents=[common])
    status.add_argument("id", help="job id (UUID)")
    status.add_argument("--json", action="store_true", help="print the job as JSON")

    depth = commands.add_parser(
        "depth",
        help="backlog per queue and type: ready, delayed, due soon, running, oldest wait",
        parents=[common],
    )
    depth.add_argument("--queue", metavar="NAME", help="one queue (default: all)")
    depth.add_argument(
        "--due-within",
        type=parse_duration_ms,
        default=maintenance.DEFAULT_DUE_WITHIN * 1000,
        metavar="DURATION",
        help="count delayed jobs due within this as due soon (default 1m)",
    )
    depth.add_argument("--json", action="store_true", help="print JSON")

    stats = commands.add_parser("stats", help="job counts by status and type", parents=[common])
    stats.add_argument("--queue", metavar="NAME", help="one queue (default: all)")
    stats.add_argument("--json", action="store_true", help="print JSON")

    complete = commands.add_parser("complete", help="mark a job done", parents=[common])
    complete.add_argument("id", help="job id (UUID)")
    complete.add_argument("--result", type=parse_json, metavar="JSON", help="job result")

    fail = commands.add_parser(
        "fail", help="record a failed attempt (retried while attempts remain)", parents=[common]
    )
    fail.add_argument("id", help="job id (UUID)")
    fail.add_argument("--error", required=True, metavar="TEXT", help="what went wrong")

    cleanup = commands.add_parser(
        "cleanup-stale-locks", help="release running jobs of dead workers", parents=[common]
    )
    cleanup.add_argument(
        "--threshold",
        type=parse_duration_ms,
        default=maintenance.DEFAULT_STALE_THRESHOLD_MS,
        metavar="DURATION",
        help="no heartbeat for this long means dead (default 5m)",
    )
    cleanup.add_argument("--queue", metavar="NAME", help="one queue (default: all)")

    add_worker_parser(commands, common)

    plugins.add_commands(commands, common)
    return parser


def _print_job(job: types.Job, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job.to_json(), indent=2, ensure_ascii=False))
        return
    for name, value in job.to_json().items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        print(f"{name:>13}: {'' if shown is None else shown}")


def _stats_table(total: types.QueueStats, by_type: dict[str, types.QueueStats]) -> str:
    statuses = [status.value for status in types.JobStatus]
    width = max([len("TOTAL"), *(len(name) for name in by_type)])
    lines = [f"{'TYPE':<{width}}  " + "  ".join(f"{status:>9}" for status in statuses)]
    rows = [*by_type.items(), ("TOTAL", total)]
    lines += [
        f"{name:<{width}}  " + "  ".join(f"{counts[status]:>9}" for status in statuses)
        for name, counts in rows
    ]
    return "\n".join(lines)


async def _with_queue(
    args: argparse.Namespace,
    action: collections.abc.Callable[[queue_module.Queue], collections.abc.Awaitable[int]],
) -> int:
    async with queue_module.Queue(args.database_url, pool_max_size=2) as queue:
        return await action(queue)


def _depth_table(rows: list[maintenance.QueueDepth]) -> str:
    head = ("QUEUE", "TYPE", "READY", "DELAYED", "DUE SOON", "RUNNING", "FAILED", "DONE", "OLDEST")
    lines: list[tuple[str, ...]] = [head]
    for row in rows:
        age = "-" if row.oldest_ready_age is None else f"{row.oldest_ready_age:.1f}s"
        counts = (row.ready, row.delayed, row.due_soon, row.running, row.failed, row.done)
        lines.append((row.queue, row.type, *(str(count) for count in counts), age))
    widths = [max(len(line[column]) for line in lines) for column in range(len(head))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


async def run_db(args: argparse.Namespace) -> int:
    if args.db_command == "migrate" and args.print_only and not (args.database_url or _env_url()):
        print(migrations.render(migrations.all_migrations()))
        return 0
    if args.db_command == "prune":

        async def prune(queue: queue_module.Queue) -> int:
            deleted = await maintenance.prune_finished_jobs(
                queue, args.older_than / 1000, name=args.queue, batch_size=args.batch_size
            )
            print(f"deleted {deleted} finished job{'s' if deleted != 1 else ''}")
            return 0

        return await _with_queue(args, prune)
    conn = await db.connect(args.database_url)
    async with conn:
        if args.db_command == "migrate":
            if args.print_only:
                print(migrations.render(await migrations.pending_migrations(conn)))
                return 0
            applied = await migrations.migrate(conn)
            if applied:
                print("applied: " + ", ".join(migration.label for migration in applied))
            else:
                print("schema is up to date")
            return 0
        problems = await migrations.verify(conn)
        for problem in problems:
            print(f"schema: {problem}", file=sys.stderr)
        if not problems:
            print("schema is up to date and matches the migrations")
        return 1 if problems else 0


def _env_url() -> str | None:
    try:
        return db.resolve_database_url(None)
    except db.ConfigurationError:
        return None


async def run_command(args: argparse.Namespace) -> int:
    if args.command == "db":
        return await run_db(args)
    if args.command == "worker":
        return await run_worker(args)
    if getattr(args, "run", None) is not None:  # a plugin's command
        return int(await args.run(args))

    async def act(queue: queue_module.Queue) -> int:
        if args.command == "enqueue":
            payload = args.payload
            if args.payload_file is not None:
                payload = read_payload_file(args.payload_file)
            job = await queue.enqueue_job(
                args.type,
                payload,
                run_at=args.run_at,
                max_attempts=args.max_attempts,
                queue=args.queue,
                priority=args.priority,
            )
            if args.json:
                _print_job(job, as_json=True)
            else:
                print(job.id)
        elif args.command == "status":
            found = await queue.get_job_status(args.id)
            if found is None:
                raise UserError(f"no job with id {args.id}")
            _print_job(found, args.json)
        elif args.command == "depth":
            rows = await maintenance.queue_depth(
                queue, name=args.queue, due_within=args.due_within / 1000
            )
            if args.json:
                print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
            else:
                print(_depth_table(rows))
        elif args.command == "stats":
            total = await queue.get_queue_stats(queue=args.queue)
            by_type = await queue.get_queue_stats_by_type(queue=args.queue)
            if args.json:
                print(json.dumps({**total, "by_type": by_type}, indent=2))
            else:
                print(_stats_table(total, by_type))
        elif args.command == "complete":
            job = await queue.complete_job(args.id, args.result)
            print(f"job {job.id} is {job.status}")
        elif args.command == "fail":
            job = await queue.fail_job(args.id, args.error)
            retry = f", retry at {job.run_at.isoformat()}" if job.status == "pending" else ""
            print(
                f"job {job.id} is {job.status} (attempt {job.attempts}/{job.max_attempts}{retry})"
            )
        elif args.command == "cleanup-stale-locks":
            threshold = checks.check_threshold_ms(args.threshold)
            rescued = await queue.rescue_stale_jobs(threshold, queue=args.queue)
            for taken in rescued:
                print(
                    f"{taken.id} ({taken.type}, queue {taken.queue}) from worker"
                    f" {taken.worker_id}, silent since {taken.last_seen.isoformat()}"
                    f" -> {taken.status}"
                )
            print(f"released {len(rescued)} stale job{'s' if len(rescued) != 1 else ''}")
        return 0

    return await _with_queue(args, act)


def main(argv: collections.abc.Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup_logging(
        level="debug" if args.verbose else args.log_level,
        log_format=getattr(args, "log_format", "text"),
    )
    try:
        return asyncio.run(run_command(args))
    except (
        UserError,
        ValueError,
        TypeError,
        types.JobQueueError,
        migrations.MigrationError,
        embedded.EmbeddedUnavailableError,
        plugins.PluginError,
    ) as error:
        print(f"jobqueue: error: {error}", file=sys.stderr)
    except psycopg.Error as error:
        print(f"jobqueue: error: {db.describe_database_error(error)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("jobqueue: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
