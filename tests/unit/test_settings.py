"""Settings: one declaration gives the options, the environment reading, the in-code checks
and the README table."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re

import pytest

from jobqueue import cli, plugins, settings
from jobqueue import worker as worker_module

README = pathlib.Path(__file__).parents[2] / "README.md"
SOURCES = pathlib.Path(__file__).parents[2] / "worker"


def test_the_readme_table_is_the_declared_one() -> None:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"-->\n(\| Setting .*?)<!-- end of settings table -->", text, re.DOTALL)
    assert found, "README has no settings table between its markers"
    assert found[1].strip() == settings.markdown_table(plugins.all_settings()), (
        "the README's settings table drifted: paste `jobqueue settings --markdown` into it"
    )


def test_every_environment_read_goes_through_a_declared_setting() -> None:
    offenders = [
        f"{path.relative_to(SOURCES)}:{number}"
        for path in SOURCES.rglob("*.py")
        if path.name != "settings.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"os\.environ(\.get|\[)|os\.getenv", line)
    ]
    assert offenders == []


def test_names_and_variables_are_unique() -> None:
    declared = plugins.all_settings()
    assert len({setting.name for setting in declared}) == len(declared)
    assert len({setting.env for setting in declared}) == len(declared)
    assert all(
        setting.default is None or setting.check(setting.default) is not None
        for setting in declared
    )


def test_a_worker_in_code_gets_the_commands_defaults() -> None:
    args = cli.build_parser().parse_args(["worker"])
    from_command = worker_module.WorkerConfig(
        **{name: value for name, value in vars(args).items() if name in cli._WORKER_CONFIG_FIELDS}
    )
    in_code = worker_module.WorkerConfig()
    assert from_command == in_code
    for field in dataclasses.fields(in_code):
        assert getattr(in_code, field.name) == field.metadata["setting"].default
    assert in_code.poll_interval == 5.0
    assert in_code.pool_max_size == 5


def test_every_worker_setting_is_an_option_naming_its_variable() -> None:
    parser = cli.build_parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    help_text = commands.choices["worker"].format_help()
    for setting in settings.WORKER_COMMAND:
        assert setting.option in help_text
        assert f"[{setting.env}]" in help_text


def test_the_environment_fills_what_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQUEUE_POLL_INTERVAL", "250ms")
    monkeypatch.setenv("JOBQUEUE_LISTEN", "false")
    monkeypatch.setenv("JOBQUEUE_TYPES", "a, b")
    config = worker_module.WorkerConfig(concurrency=3)
    assert (config.poll_interval, config.listen, config.types) == (0.25, False, ["a", "b"])
    assert worker_module.WorkerConfig(poll_interval=2).poll_interval == 2.0
    args = cli.build_parser().parse_args(["worker", "--poll-interval", "1m"])
    assert cli.setting_value(args, settings.POLL_INTERVAL) == 60.0


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQUEUE_CONCURRENCY", "lots")
    with pytest.raises(
        settings.SettingError, match=r"JOBQUEUE_CONCURRENCY='lots' is not a whole number"
    ):
        worker_module.WorkerConfig()
    monkeypatch.setenv("JOBQUEUE_CONCURRENCY", "2")
    monkeypatch.setenv("JOBQUEUE_BURST", "maybe")
    with pytest.raises(settings.SettingError, match=r"JOBQUEUE_BURST='maybe'.*true or false"):
        worker_module.WorkerConfig()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"poll_interval": 5000},
            r"poll_interval is 5000 s, above the most allowed, 600 s; the unit is seconds"
            r" \(for 5000 ms, give 5\)",
        ),
        (
            {"stale_threshold": 300_000},
            r"stale_threshold is 300000 s, .*\(for 300000 ms, give 300\)",
        ),
        ({"heartbeat_interval": 0}, r"heartbeat_interval is 0 s, below the least allowed"),
        ({"concurrency": 0}, r"concurrency is 0, below the least allowed, 1$"),
        ({"concurrency": 2.5}, r"concurrency must be a whole number"),
        ({"poll_interval": "5s"}, r"poll_interval must be a number of seconds"),
        ({"listen": "no"}, r"listen must be True or False"),
        ({"grace_timeout": float("nan")}, r"grace_timeout must be finite"),
    ],
)
def test_values_in_code_are_checked_naming_the_unit(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(settings.SettingError, match=message):
        worker_module.WorkerConfig(**options)  # type: ignore[arg-type]


def test_the_seeds_positional_settings_are_seconds_too() -> None:
    with pytest.raises(settings.SettingError, match=r"for 5000 ms, give 5\)"):
        worker_module._config(5000, 2, None, {})
    assert worker_module._config(5, None, "w", {}).poll_interval == 5.0


def test_zero_means_off_where_declared() -> None:
    assert worker_module.WorkerConfig(rescue_interval=0).rescue_interval == 0
    assert settings.RESCUE_INTERVAL.parse("0") == 0
    with pytest.raises(settings.SettingError, match=r"\(or 0: never\)"):
        settings.RESCUE_INTERVAL.parse("1ms")


def test_the_cli_reports_a_wrong_unit_as_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["worker", "--poll-interval", "5000"])
    assert exited.value.code == 2
    assert "for 5000 ms, give 5" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0"),
        (0.25, "250ms"),
        (30, "30s"),
        (300, "5m"),
        (7200, "2h"),
        (86_400, "1d"),
        (90, "90s"),
    ],
)
def test_durations_print_in_their_shortest_unit(seconds: float, text: str) -> None:
    assert settings.format_duration(seconds) == text
    assert settings.parse_duration(text) == seconds
