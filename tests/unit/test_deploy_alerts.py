"""The alerts (issue 12): ``deploy/prometheus/rules.yaml`` passes ``promtool check rules``,
each alert has unit tests in ``deploy/prometheus/tests/`` (one file per alert, with a case
where it fires and one where it does not) that ``promtool test rules`` passes, each has a
summary, a description and a runbook section in ``docs/runbooks.md``, and every metric it
reads is one the worker or the operator exposes, named by a constant of ``jobqueue.metrics``."""

from __future__ import annotations

import pathlib
import re
import typing

import deploy_files
import pytest
import yaml
from deploy_files import (
    DEPLOY,
    ROOT,
    exposed_metric_names,
    promql_metric_names,
    promtool,
    run,
)

RULES = deploy_files.RULES
UNIT_TESTS = DEPLOY / "prometheus" / "tests"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SEVERITIES = {"warning", "critical"}


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to '-'."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_the_alerts_of_the_issues() -> None:
    # Seven of issue 12; the last two of issue 24 (vacuum health).
    assert sorted(rule["alert"] for rule in deploy_files.alert_rules()) == [
        "JobQueueBacklogGrowingAtMaxReplicas",
        "JobQueueDatabaseUnreachable",
        "JobQueueHighFailureRatio",
        "JobQueueOldestReadyJobTooOld",
        "JobQueueOperatorReconcileErrors",
        "JobQueueReadyJobsWithoutWorkers",
        "JobQueueStaleJobsRescued",
        "JobQueueTableBloat",
        "JobQueueXminHorizonHeldBack",
    ]


def test_promtool_accepts_the_rules() -> None:
    done = run([promtool(), "check", "rules", str(RULES)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(deploy_files.alert_rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    files = sorted(UNIT_TESTS.glob("*.yaml"))
    done = run([promtool(), "test", "rules", *map(str, files)], cwd=UNIT_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(files), done.stdout


def test_promtool_unit_tests_can_fail(tmp_path: pathlib.Path) -> None:
    # A passing suite proves something only if a wrong expectation fails it.
    source = (UNIT_TESTS / "JobQueueReadyJobsWithoutWorkers.yaml").read_text()
    wrong = source.replace("severity: critical", "severity: warning")
    assert wrong != source
    (tmp_path / "wrong.yaml").write_text(wrong.replace("../rules.yaml", str(RULES)))
    done = run([promtool(), "test", "rules", "wrong.yaml"], cwd=tmp_path)
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr


@pytest.mark.parametrize("alert", [rule["alert"] for rule in deploy_files.alert_rules()])
def test_each_alert_has_a_test_file_where_it_fires_and_one_where_it_does_not(alert: str) -> None:
    path = UNIT_TESTS / f"{alert}.yaml"
    assert path.is_file(), f"no unit tests for {alert}: add {path.relative_to(ROOT)}"
    document = yaml.safe_load(path.read_text())
    assert document["rule_files"] == ["../rules.yaml"]
    cases = [
        case
        for group in document["tests"]
        for case in group.get("alert_rule_test", [])
        if case["alertname"] == alert
    ]
    assert [case for case in cases if case["exp_alerts"]], f"{alert} never fires in its tests"
    assert [case for case in cases if not case["exp_alerts"]], f"{alert} always fires"


@pytest.mark.parametrize("rule", deploy_files.alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_says_what_and_where_to_look(rule: dict[str, typing.Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    url = annotations["runbook_url"]
    page, _, anchor = url.partition("#")
    assert page == "docs/runbooks.md", url
    assert anchor == rule["alert"].lower()
    assert anchor in _anchors(RUNBOOKS.read_text()), f"docs/runbooks.md has no section {anchor}"


def test_every_runbook_section_belongs_to_an_alert() -> None:
    sections = set(re.findall(r"^## (\S+)$", RUNBOOKS.read_text(), re.M))
    assert sections == {rule["alert"] for rule in deploy_files.alert_rules()}


@pytest.mark.parametrize("rule", deploy_files.alert_rules(), ids=lambda rule: rule["alert"])
def test_alerts_read_only_metrics_that_exist(rule: dict[str, typing.Any]) -> None:
    unknown = promql_metric_names(rule["expr"]) - exposed_metric_names().keys()
    assert not unknown, f"{rule['alert']} reads metrics no constant names: {sorted(unknown)}"


def test_a_renamed_metric_is_caught() -> None:
    expression = 'sum(rate(jobqueue_worker_job_total{outcome="done"}[5m])) > 0'
    assert promql_metric_names(expression) - exposed_metric_names().keys() == {
        "jobqueue_worker_job_total"
    }


def test_the_parts_of_an_alert_are_its_operands_without_thresholds() -> None:
    # What the monitoring e2e test evaluates against a real Prometheus for alerts that do
    # not fire in its run.
    expression = "sum by (a) (rate(x[5m])) > 0.25 and on (a) y >= z or w == 0"
    assert deploy_files.alert_parts(expression) == ["sum by (a) (rate(x[5m]))", "y", "z", "w"]
    assert deploy_files.without_thresholds(expression) == (
        "((sum by (a) (rate(x[5m]))) and on (a) ((y) >= bool (z))) or (w)"
    )
    assert deploy_files.alert_parts("max(x)") == ["max(x)"]


def test_a_missing_outside_program_skips_with_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: promtool is not there
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"promtool is not installed.*prometheus"):
        promtool()


def test_a_missing_outside_program_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"promtool is not installed.*CI=true"):
        promtool()
