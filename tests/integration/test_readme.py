"""Every Python block of the README runs (issue 29): an example that raises is the first
thing a new user meets."""

from __future__ import annotations

import pathlib
import typing

import pytest
import readme_blocks

README: typing.Final = pathlib.Path(__file__).resolve().parents[2] / "README.md"
BLOCKS: typing.Final = readme_blocks.python_blocks(README)


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_a_readme_block_runs(block: readme_blocks.Block, database_url: str) -> None:
    done = readme_blocks.run(block, database_url)
    assert done.returncode == 0, f"README {block} failed:\n{block.code}\n{done.stderr[-3000:]}"


def test_a_failing_block_is_seen(database_url: str) -> None:
    block = readme_blocks.Block(1, "await jobqueue.cleanup_stale_locks(300_000)\n")
    done = readme_blocks.run(block, database_url)
    assert done.returncode != 0
    assert "stale_threshold is 300000 s" in done.stderr
