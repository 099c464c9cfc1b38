"""An embedded PostgreSQL server (the ``pgserver`` package) for the demo and the tests, so
that neither needs a database set up beforehand. Not for production: point ``DATABASE_URL``
at a real server there."""

from __future__ import annotations

import collections.abc
import contextlib
import pathlib
import shutil
import tempfile
import typing
import warnings


class EmbeddedUnavailableError(RuntimeError):
    pass


@contextlib.contextmanager
def embedded_postgres(
    data_dir: pathlib.Path | None = None,
) -> collections.abc.Iterator[str]:
    """Start a private PostgreSQL server and yield its URL; stop it on exit. Without
    ``data_dir`` the server lives in a temporary folder that is deleted afterwards."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as error:
        raise EmbeddedUnavailableError(
            "the embedded PostgreSQL needs the 'pgserver' package:"
            " pip install 'jobqueue[embedded]', or set DATABASE_URL to a running server"
        ) from error
    scratch = data_dir is None
    folder = pathlib.Path(tempfile.mkdtemp(prefix="jobqueue-pg-")) if scratch else data_dir
    assert folder is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server: typing.Any = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        if scratch:
            shutil.rmtree(folder, ignore_errors=True)
