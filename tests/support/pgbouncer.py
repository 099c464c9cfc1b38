"""A real PgBouncer (Debian's package, 1.18) in front of the test database, for the tests of
the queue behind a pooler: started on a free port of 127.0.0.1 in transaction mode (or the
mode asked for), its configuration in a folder of its own, stopped at the end; its admin
console answers ``SHOW POOLS`` and the like. Missing, it skips the test saying how to get
it (``make db-tools``); under ``CI=true`` that fails instead."""

from __future__ import annotations

import collections.abc
import contextlib
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import typing

import deploy_files
import local_process
import psycopg
import psycopg.conninfo
import waiting

from cluster import children


def binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if found is None:
        deploy_files.missing_tool(
            "pgbouncer missing: make db-tools installs Debian's pgbouncer package"
        )
    return found


class PgBouncer(typing.NamedTuple):
    url: str  # the database, through PgBouncer
    admin_url: str  # its admin console
    log: pathlib.Path

    def show(self, what: str) -> list[dict[str, typing.Any]]:
        """``SHOW <what>`` on the admin console, as rows by column name."""
        with psycopg.connect(self.admin_url, autocommit=True, prepare_threshold=None) as conn:
            cursor = conn.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def server_connections(self, dbname: str) -> int:
        """Server connections PgBouncer holds to ``dbname`` now (in use, idle or being
        tested), the number it never lets exceed the pool size."""
        return sum(
            int(pool["sv_active"])
            + int(pool["sv_idle"])
            + int(pool["sv_used"])
            + int(pool["sv_tested"])
            + int(pool["sv_login"])
            for pool in self.show("POOLS")
            if pool["database"] == dbname
        )


@contextlib.contextmanager
def running(
    database_url: str, *, pool_mode: str = "transaction", pool_size: int = 20
) -> collections.abc.Iterator[PgBouncer]:
    """PgBouncer in front of ``database_url``'s server, for every database on it."""
    program = binary()
    given = psycopg.conninfo.conninfo_to_dict(database_url)
    host = str(given.get("host") or "127.0.0.1")
    user = str(given.get("user") or "postgres")
    port = children.free_port()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="jobqueue-pgbouncer-"))
    config = folder / "pgbouncer.ini"
    config.write_text(
        f"""[databases]
* = host={host} port={given.get("port") or 5432} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
admin_users = {user}
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 1000
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
"""
    )
    command = [program, "-q", str(config)]  # -q: its log goes to its logfile only
    if os.geteuid() == 0:  # PgBouncer will not run as root
        owner = _unprivileged_user()
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        for path in folder.iterdir():
            os.chown(path, owner.pw_uid, owner.pw_gid)
        command[1:1] = ["-u", owner.pw_name]
    process = subprocess.Popen(command, start_new_session=True)
    url = f"host=127.0.0.1 port={port} dbname={given.get('dbname')} user={user}"
    admin_url = f"host=127.0.0.1 port={port} dbname=pgbouncer user={user}"
    bouncer = PgBouncer(url, admin_url, folder / "pgbouncer.log")
    try:
        waiting.eventually_sync(lambda: _answers(url, process), timeout=20, what="pgbouncer up")
        yield bouncer
    finally:
        local_process.stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def _unprivileged_user() -> pwd.struct_passwd:
    """The embedded server's own user where it made one (it may read its socket), else nobody."""
    for name in ("pgserver", "postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("no unprivileged user to run pgbouncer as")


def _answers(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"pgbouncer exited with {process.returncode}")
    try:
        with psycopg.connect(url, connect_timeout=2, prepare_threshold=None) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True
