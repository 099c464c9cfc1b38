"""Plugins through entry points, and a lean core (issue 9, parts 1 and 2)."""

from __future__ import annotations

import importlib.metadata
import logging
import typing

import fresh_python
import pytest

import jobqueue
from jobqueue import plugins, runner


def test_importing_jobqueue_loads_no_plugin_and_no_heavy_dependency() -> None:
    probe = (
        "import sys, jobqueue; heavy = ['lxml', 'kopf', 'kubernetes',"
        " 'jobqueue_books', 'jobqueue_operator', 'static_model'];"
        " print([name for name in heavy if name in sys.modules])"
    )
    assert fresh_python.printed_by(probe) == "[]"


def test_the_command_line_carries_no_plugin_pipeline_until_a_command_needs_it() -> None:
    """Every command builds the whole parser, plugins' commands included: a worker run with
    --no-plugins must not load the book pipeline (the EPUB reader, lxml) for that."""
    probe = (
        "import sys; from jobqueue import cli; cli.build_parser();"
        " heavy = ['lxml', 'numpy', 'jobqueue_books.store', 'jobqueue_books.epub',"
        " 'jobqueue_books.embedding', 'jobqueue_operator'];"
        " print([name for name in heavy if name in sys.modules])"
    )
    assert fresh_python.printed_by(probe) == "[]"


def test_the_installed_plugins_register_their_handlers() -> None:
    registry = runner.Registry()
    assert plugins.register_all_handlers(registry) == ["books", "jobqueue"]
    assert registry.types() == ["embedBook", "jobqueue.noop", "parseBook", "summarizeBook"]
    assert plugins.register_all_handlers(registry) == [], "a second call adds nothing"


def test_a_clash_with_a_plugin_names_both_sources() -> None:
    registry = runner.Registry()

    @jobqueue.handler("parseBook", registry=registry)
    def my_parse(payload: typing.Any, job: jobqueue.Job) -> None:
        return None

    with pytest.raises(ValueError, match="'parseBook' has two handlers") as raised:
        plugins.register_all_handlers(registry)
    assert "module test_plugins" in str(raised.value)
    assert "plugin books" in str(raised.value)


def test_a_plugin_whose_extra_is_missing_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ghost = importlib.metadata.EntryPoint(
        name="ghost", value="no_such_module_anywhere:register", group=plugins.HANDLERS_GROUP
    )
    with caplog.at_level(logging.WARNING):
        assert plugins._load(ghost) is None
    assert "Plugin 'ghost' is not loaded" in caplog.text
    assert "pip install 'jobqueue[ghost]'" in caplog.text


def test_a_broken_plugin_is_an_error() -> None:
    broken = importlib.metadata.EntryPoint(
        name="broken", value="jobqueue.plugins:no_such_attribute", group=plugins.HANDLERS_GROUP
    )
    with pytest.raises(plugins.PluginError, match="plugin 'broken'"):
        plugins._load(broken)


def test_plugins_ship_their_migrations() -> None:
    assert plugins.migration_packages() == [("books", "jobqueue_books.sql")]
