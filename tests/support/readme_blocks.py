"""The Python blocks of a Markdown file, and a fresh interpreter that runs one as an
application would: top-level ``await`` allowed, ``DATABASE_URL`` set, and the few names the
README says a block may take as given (``jobqueue`` imported, ``database_url``, ``conn``,
``queue``)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import typing

_FENCE: typing.Final = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

# Run by ``python -c``: the block comes on standard input. What the block leaves running (a
# worker, the default queue, the handlers it registered) ends with the process.
_RUNNER: typing.Final = """
import ast, asyncio, os, sys
import psycopg
import jobqueue

async def main() -> None:
    code = compile(sys.stdin.read(), "README block", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    database_url = os.environ["DATABASE_URL"]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS uploads (path text)")
        await conn.commit()
        async with jobqueue.Queue(database_url) as queue:
            names = {"__name__": "__main__", "jobqueue": jobqueue, "database_url": database_url}
            names.update(conn=conn, queue=queue)
            result = eval(code, names)
            if result is not None:
                await result
    await jobqueue.stop_worker()
    await jobqueue.close_default_queue()

asyncio.run(main())
"""


@dataclasses.dataclass(frozen=True)
class Block:
    line: int  # where its code starts in the file
    code: str

    def __str__(self) -> str:
        return f"line {self.line}"


def python_blocks(path: pathlib.Path) -> list[Block]:
    text = path.read_text()
    return [
        Block(text.count("\n", 0, match.start(1)) + 1, match.group(1))
        for match in _FENCE.finditer(text)
    ]


def run(block: Block, database_url: str) -> subprocess.CompletedProcess[str]:
    """``block`` run by a new interpreter of this virtualenv against ``database_url``."""
    return subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=block.code,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": database_url},
        check=False,
    )
