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
import json
import logging
import os
import sys
import typing

import psycopg

from jobqueue import (
    control,
    db,
    embedded,
    logs,
    maintenance,
    migrations,
    plugins,
    probes,
    settings,
    types,
)
from jobqueue import queue as queue_module
from jobqueue import worker as worker_module


class UserError(Exception):
    """A mistake in what the user asked for: reported as one line, no traceback."""


def parse_json(text: str) -> typing.Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON {text[:80]!r}: {error}") from None
    except RecursionError:
        raise argparse.ArgumentTypeError(
            f"invalid JSON: nested more than {types.MAX_JSON_DEPTH} levels deep"
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


def parse_duration(text: str) -> float:
    """An argparse type: a duration above zero, in seconds (``30s``, ``5m``, ``7d``)."""
    try:
        seconds = settings.parse_duration(text)
    except settings.SettingError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be above zero")
    return seconds


def setting_type(setting: settings.Setting) -> collections.abc.Callable[[str], typing.Any]:
    """An argparse type: text parsed and checked as ``setting`` declares."""

    def parse(text: str) -> typing.Any:
        try:
            return setting.parse(text)
        except settings.SettingError as error:
            raise argparse.ArgumentTypeError(
                str(error).removeprefix(f"{setting.option}=")
            ) from None

    return parse


def add_setting_option(parser: argparse.ArgumentParser, setting: settings.Setting) -> None:
    """The option of a declared setting. It stays unset unless given, so the caller can
    tell a given value from the environment's (``setting_value``)."""

    where = f"{setting.help} [{setting.env}]"
    if setting.kind is settings.Kind.FLAG:
        parser.add_argument(
            setting.option,
            dest=setting.name,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=f"{where} (default: {setting.describe_default()})",
        )
        return
    metavar = {
        settings.Kind.DURATION: "SECONDS",
        settings.Kind.INTEGER: "N",
        settings.Kind.LIST: "A,B",
    }.get(setting.kind)
    parser.add_argument(
        setting.option,
        dest=setting.name,
        type=setting_type(setting),
        choices=setting.choices or None,
        metavar=metavar,
        default=argparse.SUPPRESS,
        help=f"{where} (default: {setting.describe_default()})"
        + (
            "; 500ms, 30s, 5m, 2h and 7d work too" if setting.kind is settings.Kind.DURATION else ""
        ),
    )


def setting_value(args: argparse.Namespace, setting: settings.Setting) -> typing.Any:
    """The option's value if given, else the environment's, else the default."""
    if setting.name in vars(args):
        return getattr(args, setting.name)
    return setting.from_env()


# The worker options that are fields of ``WorkerConfig``; the others the command uses itself.
_WORKER_CONFIG_FIELDS: typing.Final = frozenset(
    field.name for field in dataclasses.fields(worker_module.WorkerConfig)
)


def add_worker_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``jobqueue worker``: what a worker pod runs. Each option also comes from the
    environment variable named in its help, so a Deployment can set them with ``env``."""
    worker = commands.add_parser(
        "worker", help="run a worker: claim and run jobs until stopped", parents=[common]
    )
    for setting in settings.WORKER_COMMAND:
        if setting is settings.IMPORTS:
            worker.add_argument(
                setting.option,
                dest=setting.name,
                action="append",
                default=argparse.SUPPRESS,
                metavar="MODULE",
                help=f"import a module that registers handlers; repeatable, adds to"
                f" [{setting.env}] (comma-separated)",
            )
        else:
            add_setting_option(worker, setting)


async def run_worker(args: argparse.Namespace) -> int:
    worker = worker_module
    plugins.register_configured_handlers(
        load_plugins=setting_value(args, settings.PLUGINS), imports=vars(args).get("imports", [])
    )
    config = worker.WorkerConfig(
        **{name: value for name, value in vars(args).items() if name in _WORKER_CONFIG_FIELDS}
    )
    running = worker.make_worker(config, database_url=args.database_url)
    running.install_signal_handlers()
    server = None
    metrics_port = setting_value(args, settings.METRICS_PORT)
    if metrics_port is not None:
        server = probes.ProbeServer(running.healthy, running.ready, port=metrics_port)
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
        logs.log_waiting_lines()
        logging.shutdown()
        os._exit(1 if failure else 0)
    if failure is not None:
        raise UserError(str(failure)) from failure
    return 0


def add_common_options(parser: argparse.ArgumentParser) -> None:
    for setting in settings.COMMON:
        add_setting_option(parser, setting)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobqueue",
        description="A job queue on PostgreSQL: migrations, queue operations, workers."
        " Durations are in seconds (or 500ms, 5m, 2h, 7d).",
    )
    add_common_options(parser)
    # Subcommands accept the same options after their name; they stay unset unless given,
    # so one given before the subcommand is not overwritten.
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
        type=parse_duration,
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
    enqueue.add_argument(
        "--concurrency-key",
        metavar="KEY",
        help="what the job runs on behalf of (a tenant): its limit and its turn",
    )
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
        type=parse_duration,
        default=maintenance.DEFAULT_DUE_WITHIN,
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
        type=setting_type(settings.STALE_THRESHOLD),
        default=settings.STALE_THRESHOLD.default,
        metavar="SECONDS",
        help="no heartbeat for this long means dead (default 5m)",
    )
    cleanup.add_argument("--queue", metavar="NAME", help="one queue (default: all)")

    add_worker_parser(commands, common)
    add_jobs_parser(commands, common)
    queues = commands.add_parser(
        "queues", help="pause, resume, or list the paused queues", parents=[common]
    )
    queue_actions = queues.add_subparsers(dest="queues_command", required=True, metavar="ACTION")
    for name, what in (
        ("pause", "stop workers claiming from a queue (running jobs finish)"),
        ("resume", "let workers claim from a paused queue again, at once"),
        ("paused", "list the paused queues and since when"),
    ):
        action = queue_actions.add_parser(name, help=what, parents=[common])
        action.add_argument(
            "name",
            nargs="?" if name == "paused" else None,
            metavar="QUEUE",
            help="the queue" + (" (default: all)" if name == "paused" else ""),
        )
        action.add_argument("--json", action="store_true", help="print JSON")

    add_limits_parser(commands, common)
    schedules = commands.add_parser(
        "schedules", help="list the periodic schedules, or delete one", parents=[common]
    )
    schedule_actions = schedules.add_subparsers(
        dest="schedules_command", required=True, metavar="ACTION"
    )
    listing = schedule_actions.add_parser(
        "ls", help="the declared schedules with their next and last runs", parents=[common]
    )
    listing.add_argument("--queue", metavar="NAME", help="one queue (default: all)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    forget = schedule_actions.add_parser(
        "delete",
        help="forget a schedule no process declares any more (its jobs stay)",
        parents=[common],
    )
    forget.add_argument("name", metavar="NAME", help="the schedule")

    shown = commands.add_parser(
        "settings",
        help="every setting (the core's and the plugins'): its value here and where it came from",
        parents=[common],
    )
    shown.add_argument(
        "--markdown", action="store_true", help="print the README's table of settings instead"
    )

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
    return _aligned(lines, left=2)


def _aligned(lines: list[tuple[str, ...]], *, left: int) -> str:
    """Rows of cells in columns: the first ``left`` columns aligned left, the rest right."""
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if column < left else cell.rjust(width)
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
                queue, args.older_than, name=args.queue, batch_size=args.batch_size
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


def show_settings(*, markdown: bool) -> int:
    declared = plugins.all_settings()
    if markdown:
        print(settings.markdown_table(declared))
        return 0
    width = max(len(setting.env) for setting in declared)
    for setting in declared:
        source = "environment" if setting.env in os.environ else "default"
        value = setting.from_env()
        if setting.kind is settings.Kind.DURATION and value is not None:
            shown = settings.format_duration(value)
        elif setting is settings.DATABASE_URL and value:
            shown = "(set)"  # it may hold a password
        else:
            shown = setting.describe_default() if value is None else str(value)
        print(f"{setting.env:<{width}}  {shown}  ({source})")
    return 0


async def run_command(args: argparse.Namespace) -> int:
    if args.command == "db":
        return await run_db(args)
    if args.command == "worker":
        return await run_worker(args)
    if args.command == "settings":
        return show_settings(markdown=args.markdown)
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
                concurrency_key=args.concurrency_key,
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
            rows = await maintenance.queue_depth(queue, name=args.queue, due_within=args.due_within)
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
        elif args.command == "jobs":
            return await run_jobs(args, queue)
        elif args.command == "queues":
            return await run_queues(args, queue)
        elif args.command == "schedules":
            return await run_schedules(args, queue)
        elif args.command == "limits":
            return await run_limits(args, queue)
        elif args.command == "cleanup-stale-locks":
            rescued = await queue.rescue_stale_jobs(args.threshold, queue=args.queue)
            for taken in rescued:
                print(
                    f"{taken.id} ({taken.type}, queue {taken.queue}) from worker"
                    f" {taken.worker_id}, silent since {taken.last_seen.isoformat()}"
                    f" -> {taken.status}"
                )
            print(f"released {len(rescued)} stale job{'s' if len(rescued) != 1 else ''}")
        return 0

    return await _with_queue(args, act)


# --- jobqueue jobs: list, show, cancel, retry, delete ------------------------------------------


def _add_filter_options(parser: argparse.ArgumentParser) -> None:
    """The options of a ``JobFilter``: the same for every ``jobs`` action."""
    parser.add_argument(
        "--status",
        dest="statuses",
        action="append",
        metavar="STATUS",
        help="pending, running, failed, done or cancelled; repeatable, or A,B",
    )
    parser.add_argument(
        "--type", dest="types", action="append", metavar="TYPE", help="job type; repeatable, or A,B"
    )
    parser.add_argument("--queue", metavar="NAME", help="one queue (default: all)")
    parser.add_argument(
        "--since", type=parse_aware_datetime, metavar="ISO", help="created at or after this"
    )
    parser.add_argument(
        "--until", type=parse_aware_datetime, metavar="ISO", help="created before this"
    )
    parser.add_argument(
        "--error", dest="error_contains", metavar="TEXT", help="error contains TEXT (any case)"
    )
    parser.add_argument(
        "--payload",
        dest="payload_contains",
        type=parse_json,
        metavar="JSON",
        help="payload contains this JSON, e.g. '{\"bookId\": 7}'",
    )


def add_jobs_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """``jobqueue jobs ls|show|cancel|retry|delete``: job control from a shell."""
    jobs = commands.add_parser(
        "jobs", help="list, show, cancel, retry or delete jobs", parents=[common]
    )
    actions = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "ls", help="list jobs, newest first, a page at a time", parents=[common]
    )
    _add_filter_options(listing)
    listing.add_argument("--oldest-first", action="store_true", help="oldest first instead")
    listing.add_argument(
        "--limit",
        type=whole_number(1, control.MAX_PAGE),
        default=control.DEFAULT_PAGE,
        metavar="N",
        help=f"at most N jobs (default {control.DEFAULT_PAGE})",
    )
    listing.add_argument(
        "--after", metavar="ID", help="the page after this job id (the last one listed)"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser("show", help="show one job", parents=[common])
    show.add_argument("id", help="job id (UUID)")
    show.add_argument("--json", action="store_true", help="print the job as JSON")
    for name, what in (
        ("cancel", "cancel pending jobs now and ask running ones to stop"),
        ("retry", "put failed or cancelled jobs back to pending, due now"),
        ("delete", "delete finished (done, failed, cancelled) jobs"),
    ):
        action = actions.add_parser(name, help=what, parents=[common])
        action.add_argument("ids", nargs="*", metavar="ID", help="job ids (UUIDs)")
        _add_filter_options(action)
        action.add_argument(
            "--all", action="store_true", help="with no id or filter: every job it applies to"
        )
        action.add_argument("--json", action="store_true", help="print JSON")


async def run_queues(args: argparse.Namespace, queue: queue_module.Queue) -> int:
    action = args.queues_command
    if action == "pause":
        since = await queue.pause_queue(args.name)
        paused = {args.name: since}
    elif action == "resume":
        was_paused = await queue.resume_queue(args.name)
        if args.json:
            print(json.dumps({"queue": args.name, "resumed": was_paused}))
        else:
            print(f"queue {args.name} " + ("resumed" if was_paused else "was not paused"))
        return 0
    else:
        paused = await queue.paused_queues(args.name)
    if args.json:
        print(json.dumps({name: since.isoformat() for name, since in paused.items()}))
    else:
        for name, since in paused.items():
            print(f"queue {name} paused since {since.isoformat(timespec='seconds')}")
    return 0


def add_limits_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    limits = commands.add_parser(
        "limits",
        help="how many jobs of a queue, job type or concurrency key run at once",
        parents=[common],
    )
    actions = limits.add_subparsers(dest="limits_command", required=True, metavar="ACTION")
    listing = actions.add_parser("ls", help="the limits", parents=[common])
    listing.add_argument("--queue", metavar="NAME", help="one queue (default: all)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    for name, what in (
        ("set", "set how many run at once (from the next claim on; running jobs go on)"),
        ("rate", "set how many start per period"),
        ("rm", "remove a scope's limits"),
    ):
        action = actions.add_parser(name, help=what, parents=[common])
        action.add_argument("queue", metavar="QUEUE", help="the queue")
        if name != "rm":
            action.add_argument(
                "count",
                metavar="N",
                type=lambda text: None if text == "none" else int(text),
                help="at once (set) or starts per period (rate); 'none': no limit",
            )
        if name == "rate":
            action.add_argument("--per", type=float, default=1.0, help="the period, seconds")
            action.add_argument("--burst", type=int, help="most starts at once (default N)")
        scope = action.add_mutually_exclusive_group()
        scope.add_argument("--type", metavar="TYPE", help="of this job type")
        scope.add_argument("--key", metavar="KEY", help="of this concurrency key")
        scope.add_argument(
            "--per-key", action="store_true", help="of each key without a limit of its own"
        )


async def run_limits(args: argparse.Namespace, queue: queue_module.Queue) -> int:
    scope = {"queue": args.queue, "per_key": False}
    if args.limits_command != "ls":
        scope.update(type=args.type, key=args.key, per_key=args.per_key)
    if args.limits_command == "set":
        found = [await queue.limit_concurrency(args.count, **scope)]
    elif args.limits_command == "rate":
        found = [await queue.limit_rate(args.count, per=args.per, burst=args.burst, **scope)]
    elif args.limits_command == "rm":
        if not await queue.remove_limit(**scope):
            raise UserError("no such limit")
        print("limit removed")
        return 0
    else:
        found = await queue.list_limits(args.queue)
        if args.json:
            print(json.dumps([_limit_json(limit) for limit in found], indent=2))
            return 0
    lines: list[tuple[str, ...]] = [("QUEUE", "OF", "NAME", "AT ONCE", "STARTS", "SET AT")]
    lines += [
        (
            limit.queue,
            limit.scope,
            limit.name or ("every key" if limit.scope == "key" else "-"),
            "-" if limit.concurrency is None else str(limit.concurrency),
            "-"
            if limit.rate is None
            else f"{limit.rate}/{limit.per:g}s burst {limit.burst or limit.rate}",
            limit.updated_at.isoformat(timespec="seconds"),
        )
        for limit in found
    ]
    print(_aligned(lines, left=len(lines[0])))
    return 0


def _limit_json(limit: types.Limit) -> dict[str, object]:
    return {
        "queue": limit.queue,
        "scope": limit.scope.value,
        "name": limit.name,
        "concurrency": limit.concurrency,
        "rate": limit.rate,
        "per": limit.per,
        "burst": limit.burst,
        "updated_at": limit.updated_at.isoformat(),
    }


async def run_schedules(args: argparse.Namespace, queue: queue_module.Queue) -> int:
    if args.schedules_command == "delete":
        if not await queue.delete_schedule(args.name):
            raise UserError(f"no schedule named {args.name!r}")
        print(f"schedule {args.name} deleted")
        return 0
    found = await queue.list_schedules(args.queue)
    if args.json:
        print(json.dumps([state.to_json() for state in found], indent=2, ensure_ascii=False))
        return 0

    def when(moment: datetime.datetime | None) -> str:
        return "-" if moment is None else moment.isoformat(timespec="seconds")

    lines: list[tuple[str, ...]] = [("NAME", "QUEUE", "TYPE", "TIMING", "NEXT RUN", "LAST RUN")]
    lines += [
        (
            state.name,
            state.queue,
            state.type,
            state.timing,
            when(state.next_run_at),
            when(state.last_run_at),
        )
        for state in found
    ]
    print(_aligned(lines, left=len(lines[0])))
    return 0


def _job_filter(args: argparse.Namespace) -> types.JobFilter:
    def listed(given: list[str] | None) -> list[str] | None:
        """Repeated options, each perhaps a comma-separated list."""
        return None if given is None else [item for text in given for item in text.split(",")]

    return types.JobFilter(
        ids=getattr(args, "ids", None) or None,
        statuses=listed(args.statuses),
        types=listed(args.types),
        queue=args.queue,
        created_after=args.since,
        created_before=args.until,
        error_contains=args.error_contains,
        payload_contains=args.payload_contains,
    )


def _jobs_table(jobs: list[types.Job]) -> str:
    head = ("ID", "TYPE", "QUEUE", "STATUS", "ATTEMPTS", "CREATED", "ERROR")
    lines: list[tuple[str, ...]] = [head]
    for job in jobs:
        error = (job.error or "").splitlines()[0][:60] if job.error else ""
        lines.append(
            (
                str(job.id),
                job.type,
                job.queue,
                job.status.value,
                f"{job.attempts}/{job.max_attempts}",
                job.created_at.isoformat(timespec="seconds"),
                error,
            )
        )
    return _aligned(lines, left=len(head))


async def run_jobs(args: argparse.Namespace, queue: queue_module.Queue) -> int:
    action = args.jobs_command
    if action == "show":
        found = await queue.get_job_status(args.id)
        if found is None:
            raise UserError(f"no job with id {args.id}")
        _print_job(found, args.json)
        return 0
    job_filter = _job_filter(args)
    if action == "ls":
        jobs = await queue.list_jobs(
            job_filter, oldest_first=args.oldest_first, after=args.after, limit=args.limit
        )
        # A full page may have a next one: its key is the last id listed.
        after = str(jobs[-1].id) if len(jobs) == args.limit else None
        if args.json:
            page = {"jobs": [job.to_json() for job in jobs], "next_after": after}
            print(json.dumps(page, indent=2, ensure_ascii=False))
        else:
            print(_jobs_table(jobs))
            if after is not None:
                print(f"more: --after {after}")
        return 0
    if job_filter == types.JobFilter() and not args.all:
        raise UserError(f"jobs {action} needs job ids, a filter (--status, --type, ...) or --all")
    if action == "delete":
        deleted = await queue.delete_jobs(job_filter)
        if args.json:
            print(json.dumps({"deleted": deleted}))
        else:
            print(f"deleted {deleted} job{'s' if deleted != 1 else ''}")
        return 0
    if action == "cancel":
        changed = await queue.cancel_jobs(job_filter)
    else:
        changed = await queue.retry_jobs(job_filter)
    if args.json:
        print(json.dumps([job.to_json() for job in changed], indent=2, ensure_ascii=False))
    else:
        for job in changed:
            asked = " (asked to stop)" if job.status is types.JobStatus.RUNNING else ""
            print(f"job {job.id} is {job.status}{asked}")
        done = "cancelled" if action == "cancel" else "retried"
        print(f"{done} {len(changed)} job{'s' if len(changed) != 1 else ''}")
    return 0


def event_loop_factory(
    choice: str,
) -> collections.abc.Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``choice`` (``None``: asyncio's own loop)."""
    if choice == "asyncio":
        return None
    try:
        # Imported here: optional (the fast extra), and only the commands use it.
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise UserError(
                "the uvloop event loop is not installed: pip install 'jobqueue[fast]',"
                " or choose JOBQUEUE_EVENT_LOOP=asyncio"
            ) from None
        return None
    return uvloop.new_event_loop


def main(argv: collections.abc.Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for setting in settings.COMMON:
            setattr(args, setting.name, setting_value(args, setting))
    except settings.SettingError as error:
        print(f"jobqueue: error: {error}", file=sys.stderr)
        return 1
    logs.setup_logging(
        level="debug" if args.verbose else args.log_level, log_format=args.log_format
    )
    try:
        with asyncio.Runner(loop_factory=event_loop_factory(args.event_loop)) as runner:
            return runner.run(run_command(args))
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
