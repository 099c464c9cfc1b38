"""Plugins: what installed packages add to jobqueue, found through entry points.

Three groups, each entry named after its plugin:

- ``jobqueue.handlers``: a function ``register(registry)`` that registers job handlers.
- ``jobqueue.commands``: a function ``add_commands(commands, common)`` that adds
  subcommands to the ``jobqueue`` command (``commands`` is argparse's subparsers action,
  ``common`` the parent parser holding the shared options); each subcommand sets
  ``run=async function(args) -> exit status`` as its default.
- ``jobqueue.migrations``: a package holding a ``migrations/`` folder of numbered SQL files,
  applied with the core's under the entry's name (a version history per component).
- ``jobqueue.settings``: a sequence of ``jobqueue.settings.Setting``, the plugin's settings,
  listed by ``jobqueue settings`` and in the README's table with the core's.

A plugin whose extra is not installed (its import fails) is skipped, with a warning naming
the extra when its handlers were wanted (quietly for its commands); any other failure while
loading one is an error. The core registers its only
built-in handler, ``jobqueue.noop``, the same way: its name is in the ``jobqueue.``
namespace, so no handler of an application clashes with it by accident.
"""

from __future__ import annotations

import argparse
import collections.abc
import importlib
import importlib.metadata
import logging
import types
import typing

from jobqueue import runner, settings
from jobqueue import types as job_types

logger = logging.getLogger("jobqueue.plugins")

HANDLERS_GROUP: typing.Final = "jobqueue.handlers"
COMMANDS_GROUP: typing.Final = "jobqueue.commands"
MIGRATIONS_GROUP: typing.Final = "jobqueue.migrations"
SETTINGS_GROUP: typing.Final = "jobqueue.settings"


class PluginError(RuntimeError):
    """An installed plugin could not be loaded for a reason other than a missing extra."""


class NoopHandler:
    """``jobqueue.noop``: does nothing and returns ``None``. For smoke tests of a deployment
    (``jobqueue enqueue jobqueue.noop``) and for measuring the queue's own overhead."""

    type = "jobqueue.noop"

    async def handle(self, payload: typing.Any, job: job_types.Job) -> None:
        return None


def register_core(registry: runner.Registry) -> None:
    """The core's own entry point: its built-in handler."""
    registry.register(NoopHandler(), source="jobqueue (built in)")


def _entries(group: str) -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=group), key=lambda entry: entry.name)


def _load(
    entry: importlib.metadata.EntryPoint, missing_level: int = logging.WARNING
) -> typing.Any | None:
    """The entry's object, or ``None`` (logged at ``missing_level``) when its extra is not
    installed."""
    try:
        return entry.load()
    except ImportError as error:
        logger.log(
            missing_level,
            "[Plugins] Plugin %r is not loaded: %s (install its extra: pip install 'jobqueue[%s]')",
            entry.name,
            error,
            entry.name,
        )
        return None
    except Exception as error:
        raise PluginError(
            f"plugin {entry.name!r} ({entry.value}) failed to load: {error}"
        ) from error


def register_all_handlers(registry: runner.Registry | None = None) -> list[str]:
    """Register the handlers of every installed plugin (the seed's one place that registers
    all handlers, S9); returns the plugins loaded. Loading a plugin twice into one registry
    is harmless; two handlers for one job type is an error naming both."""
    target = registry or runner.REGISTRY
    loaded = []
    for entry in _entries(HANDLERS_GROUP):
        if entry.name in target.plugins:
            continue
        register = _load(entry)
        if register is None:
            continue
        register(target)
        target.plugins.add(entry.name)
        loaded.append(entry.name)
    return loaded


def import_modules(names: collections.abc.Iterable[str]) -> None:
    """Import modules that register handlers when imported (``--import``)."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # any failure while importing user code is the user's
            raise PluginError(f"cannot import handler module {name!r}: {error}") from error


def register_configured_handlers(
    *,
    load_plugins: bool | None = None,
    imports: collections.abc.Sequence[str] = (),
    registry: runner.Registry | None = None,
) -> None:
    """What a worker registers: every installed plugin's handlers unless ``load_plugins``
    (default ``$JOBQUEUE_PLUGINS``) is false, then the modules of ``$JOBQUEUE_IMPORTS``
    and ``imports``."""
    if settings.PLUGINS.from_env() if load_plugins is None else load_plugins:
        register_all_handlers(registry)
    import_modules([*settings.IMPORTS.from_env(), *imports])


def all_settings() -> list[settings.Setting]:
    """The core's settings, then each installed plugin's."""
    found = list(settings.CORE)
    for entry in _entries(SETTINGS_GROUP):
        declared = _load(entry, logging.DEBUG)
        if declared is not None:
            found.extend(declared)
    return found


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Let every installed plugin add its subcommands."""
    for entry in _entries(COMMANDS_GROUP):
        # Quietly: a lean install should not hear about commands it did not ask for.
        add = _load(entry, logging.DEBUG)
        if add is not None:
            add(commands, common)


def migration_packages() -> list[tuple[str, str]]:
    """``(component, package)`` for every plugin that ships migrations, by name."""
    found = []
    for entry in _entries(MIGRATIONS_GROUP):
        package = _load(entry)
        if isinstance(package, types.ModuleType):
            found.append((entry.name, package.__name__))
    return found
