"""The web UI's settings, declared like the core's (``jobqueue.settings``) and listed with
them by ``jobqueue settings`` through the ``jobqueue.settings`` entry point."""

from __future__ import annotations

import typing

from jobqueue import settings

HOST = settings.Setting(
    "host",
    "JOBQUEUE_UI_HOST",
    settings.Kind.TEXT,
    "the address the UI listens on; anything but localhost needs a token",
    default="127.0.0.1",
    group="ui",
)
PORT = settings.Setting(
    "port",
    "JOBQUEUE_UI_PORT",
    settings.Kind.INTEGER,
    "the UI's port",
    default=8080,
    group="ui",
    minimum=0,
    maximum=65535,
    zero="any free port",
)
ADMIN_TOKEN = settings.Setting(
    "admin_token",
    "JOBQUEUE_UI_ADMIN_TOKEN",
    settings.Kind.TEXT,
    "the admin role's secret: sent as a Bearer token, or as the password of HTTP Basic"
    " with any user name (recorded in the audit trail); may act on jobs and queues",
    group="ui",
    unset="none: no admin, unless bound to localhost without tokens",
    cli=False,
)
VIEWER_TOKEN = settings.Setting(
    "viewer_token",
    "JOBQUEUE_UI_VIEWER_TOKEN",
    settings.Kind.TEXT,
    "the read-only role's secret, sent the same way; may look, never act",
    group="ui",
    unset="none: no read-only role",
    cli=False,
)
REDACT = settings.Setting(
    "redact",
    "JOBQUEUE_UI_REDACT",
    settings.Kind.LIST,
    "JSON paths of payload and result fields shown as [redacted] and refused in filters:"
    " $.password, $.card.number, $.items[*].token, $..secret (any depth)",
    default=(),
    group="ui",
)
QUERY_TIMEOUT = settings.Setting(
    "query_timeout",
    "JOBQUEUE_UI_QUERY_TIMEOUT",
    settings.Kind.DURATION,
    "the longest one page's or API call's query may run; a filter that takes longer is"
    " refused with a hint to narrow it",
    default=5.0,
    group="ui",
    minimum=0.1,
    maximum=600.0,
)
PAGE_SIZE = settings.Setting(
    "page_size",
    "JOBQUEUE_UI_PAGE_SIZE",
    settings.Kind.INTEGER,
    "jobs a page of the job list shows",
    default=50,
    group="ui",
    minimum=1,
    maximum=1000,
)

SETTINGS: typing.Final = (HOST, PORT, ADMIN_TOKEN, VIEWER_TOKEN, REDACT, QUERY_TIMEOUT, PAGE_SIZE)
