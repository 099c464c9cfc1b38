"""``jobqueue ui``, added to ``jobqueue`` through the ``jobqueue.commands`` entry point: serves
the web UI and admin API with uvicorn until stopped."""

from __future__ import annotations

import argparse
import typing

from jobqueue import cli, db
from jobqueue_ui import settings as ui_settings

if typing.TYPE_CHECKING:
    import uvicorn


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    ui = commands.add_parser(
        "ui",
        help="serve the web UI and admin API (the ui extra)",
        description="Serve the web UI and its JSON admin API. Without tokens it is open to"
        " anyone who can reach it, so it then listens on localhost only.",
        parents=[common],
    )
    for setting in ui_settings.SETTINGS:
        if setting.cli:
            cli.add_setting_option(ui, setting)
    ui.set_defaults(run=run_ui)


def make_server(args: argparse.Namespace) -> uvicorn.Server:
    """The uvicorn server of ``jobqueue ui``, configured from ``args`` and the environment."""
    try:
        import uvicorn  # the ui extra's: imported only when the UI runs

        from jobqueue_ui import app
    except ImportError as error:
        raise cli.UserError(
            f"the UI needs the ui extra: pip install 'jobqueue[ui]' ({error})"
        ) from None

    def value(setting: typing.Any) -> typing.Any:
        return cli.setting_value(args, setting)

    config = app.Config(
        database_url=db.resolve_database_url(args.database_url),
        host=value(ui_settings.HOST),
        admin_token=value(ui_settings.ADMIN_TOKEN),
        viewer_token=value(ui_settings.VIEWER_TOKEN),
        redact=value(ui_settings.REDACT),
        query_timeout=value(ui_settings.QUERY_TIMEOUT),
        page_size=value(ui_settings.PAGE_SIZE),
    )
    server_config = uvicorn.Config(
        app.create_app(config),
        host=config.host,
        port=value(ui_settings.PORT),
        log_config=None,  # jobqueue's logging, configured by the command
        access_log=False,
        server_header=False,
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(server_config)


async def run_ui(args: argparse.Namespace) -> int:
    server = make_server(args)
    await server.serve()
    return 0 if server.started else 1
