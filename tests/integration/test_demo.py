"""``jobqueue demo``, the README's main command, run as a real process."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from jobqueue_books import samples

JOBQUEUE = str(pathlib.Path(sys.executable).with_name("jobqueue"))


def demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBQUEUE, "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_demo_starts_its_own_postgres_and_runs_the_pipeline() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    done = demo(env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "starting an embedded PostgreSQL" in out
    assert "enqueued 5 parseBook jobs" in out
    assert "15/15 jobs" in out
    assert "The Python Language Reference, Retold" in out
    assert "Смотритель маяка" in out
    assert "山中的图书馆" in out
    assert "雪の駅" in out
    assert out.count("summary: ") == 5
    assert 'closest passages to "what happens when an exception is raised"' in out
    assert (
        "queue stats: {'pending': 0, 'running': 0, 'failed': 0, 'done': 15, 'cancelled': 0}" in out
    )
    assert "Traceback" not in done.stderr


def test_demo_takes_epub_paths(empty_database_url: str, tmp_path: pathlib.Path) -> None:
    book = samples.write_epub(
        tmp_path / "given.epub",
        title="A Given Book",
        authors=["Some One"],
        language="en",
        chapters=[("Only", "The only chapter has a sentence. And another one.")],
    )
    junk = tmp_path / "junk.epub"
    junk.write_text("not a book")
    done = demo({**os.environ, "DATABASE_URL": empty_database_url}, str(book), str(junk))
    assert done.returncode == 0, done.stderr
    assert "enqueued 2 parseBook jobs" in done.stdout
    assert "A Given Book" in done.stdout
    assert "2     failed: invalid payload: PayloadError: not an EPUB" in done.stdout
