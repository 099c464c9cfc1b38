"""The commands' event loop (JOBQUEUE_EVENT_LOOP): uvloop when installed, or as asked."""

from __future__ import annotations

import sys

import pytest
import uvloop

from jobqueue import cli


def test_auto_and_uvloop_choose_uvloop_when_it_is_installed() -> None:
    assert cli.event_loop_factory("auto") is uvloop.new_event_loop
    assert cli.event_loop_factory("uvloop") is uvloop.new_event_loop
    assert cli.event_loop_factory("asyncio") is None


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an import of a missing one does
    assert cli.event_loop_factory("auto") is None
    with pytest.raises(cli.UserError, match=r"pip install 'jobqueue\[fast\]'"):
        cli.event_loop_factory("uvloop")


def test_a_command_runs_on_the_loop_chosen(capsys: pytest.CaptureFixture[str]) -> None:
    for choice in ("asyncio", "uvloop"):
        assert cli.main(["--event-loop", choice, "settings"]) == 0
    assert "JOBQUEUE_EVENT_LOOP" in capsys.readouterr().out
