"""The web UI in a real browser: Debian's Chromium, headless, driven through its chromedriver
(tests/support/browser.py), against ``jobqueue ui`` and ``jobqueue worker`` running as real
processes on the test's database. Each page is checked by axe-core for serious or critical
accessibility violations, and screenshot: into the test's temporary folder, or, with
``JOBQUEUE_UI_SCREENSHOTS=docs/ui``, into the docs (how docs/ui/*.png were made).

The last test needs no browser: the ``jobqueue ui`` process riding out its database going away.

Skipped, saying how to get them, without Chromium or axe-core (``make browser-tools``);
under ``CI=true`` that fails instead."""

from __future__ import annotations

import base64
import collections.abc
import contextlib
import datetime
import os
import pathlib
import subprocess
import sys
import typing
import urllib.error
import urllib.request

import browser
import deploy_files
import local_process
import psycopg
import pytest
import waiting
from selenium import webdriver
from selenium.common import exceptions
from selenium.webdriver.common import by

import jobqueue
from cluster import children, node

ADMIN = "admin-token-for-the-browser"
VIEWER = "viewer-token-for-the-browser"
SUPPORT = pathlib.Path(__file__).parents[1] / "support"
JOBQUEUE = str(pathlib.Path(sys.executable).with_name("jobqueue"))
CSS = by.By.CSS_SELECTOR


@pytest.fixture(scope="module")
def chromium() -> collections.abc.Iterator[webdriver.Chrome]:
    try:
        browser.tools()
        browser.axe_script_path()
    except browser.ToolsMissing as missing:
        deploy_files.missing_tool(str(missing))
    with browser.chromium() as driver:
        yield driver


@pytest.fixture
def shots(tmp_path: pathlib.Path) -> pathlib.Path:
    wanted = os.environ.get("JOBQUEUE_UI_SCREENSHOTS")
    return pathlib.Path(wanted) if wanted else tmp_path


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str]) -> collections.abc.Iterator[None]:
    process = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True)
    try:
        yield
    finally:
        local_process.stop(process)


class UI(typing.NamedTuple):
    url: str
    queue: jobqueue.SyncQueue


@pytest.fixture
def ui(database_url: str) -> collections.abc.Iterator[UI]:
    """``jobqueue ui`` on a free port of 127.0.0.1, with both tokens and ``$.password``
    redacted, and a ``jobqueue worker`` of the test handlers on queue ``media``."""
    port = children.free_port()
    env = {
        "DATABASE_URL": database_url,
        "JOBQUEUE_UI_ADMIN_TOKEN": ADMIN,
        "JOBQUEUE_UI_VIEWER_TOKEN": VIEWER,
        "JOBQUEUE_UI_REDACT": "$.password",
        "PYTHONPATH": str(SUPPORT),
    }
    worker = [JOBQUEUE, "worker", "--import", "jobqueue_test_handlers", "--queue", "media"]
    worker += ["--concurrency", "2", "--heartbeat-interval", "1", "--stale-threshold", "10"]
    with (
        started([JOBQUEUE, "ui", "--port", str(port)], env),
        started(worker, env),
        jobqueue.SyncQueue(database_url) as queue,
    ):
        url = f"http://127.0.0.1:{port}"
        deadline_wait(lambda: local_process.answers(f"{url}/healthz"), "the UI answering")
        deadline_wait(lambda: queue.list_workers("media"), "the worker up")
        yield UI(url, queue)


def deadline_wait(check: collections.abc.Callable[[], object], what: str) -> None:
    waiting.eventually_sync(check, what=what, timeout=30)


def sign_in(driver: webdriver.Chrome, user: str, token: str) -> None:
    """Every request of the browser carries these Basic credentials from now on (as after
    the browser's own sign-in prompt, which headless Chromium cannot show)."""
    credentials = base64.b64encode(f"{user}:{token}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credentials}"}}
    )


def accessible(driver: webdriver.Chrome) -> None:
    violations = browser.axe_violations(driver)
    assert violations == [], browser.describe(violations)


def navigate(driver: webdriver.Chrome, css: str) -> None:
    """Clicks the link or button ``css`` selects, and waits for the page it leads to."""
    old = driver.find_element(CSS, "html")
    driver.find_element(CSS, css).click()

    def left(_: webdriver.Chrome) -> bool:
        # The old page's root gone. While the new page replaces it, Chromium may answer for
        # the old node "does not belong to the document" rather than that it is stale.
        try:
            old.is_enabled()
        except exceptions.StaleElementReferenceException:
            return True
        except exceptions.WebDriverException as error:
            if "does not belong to the document" not in str(error):
                raise
            return True
        return False

    browser.wait_for(driver, left, what=f"{css} followed")


def text(driver: webdriver.Chrome, css: str) -> str:
    return str(driver.find_element(CSS, css).text)


def until_status(driver: webdriver.Chrome, status: str) -> None:
    """Reloads the job's page until it shows ``status``."""

    def shown(driver: webdriver.Chrome) -> bool:
        driver.refresh()
        return text(driver, "#job-status") == status

    browser.wait_for(driver, shown, timeout=30, what=f"the job {status}")


def failed_jobs(queue: jobqueue.SyncQueue, count: int) -> list[jobqueue.Job]:
    jobs = queue.enqueue_jobs(
        jobqueue.NewJob("test.record", {"n": n, "password": "hunter2"}, queue="held")
        for n in range(count)
    )
    for job in jobs:
        queue.fail_job(job.id, f"ConnectionError: upstream {job.payload['n']} refused", final=True)
    return jobs


def test_the_queues_page_refreshes_itself_and_is_accessible(
    chromium: webdriver.Chrome, ui: UI, shots: pathlib.Path
) -> None:
    failed_jobs(ui.queue, 3)
    ui.queue.enqueue_jobs(jobqueue.NewJob("test.record", {"n": n}, queue="media") for n in range(5))
    ui.queue.pause_queue("nightly")
    sign_in(chromium, "alice", ADMIN)
    chromium.get(f"{ui.url}/queues")
    assert text(chromium, ".who") == "Signed in as alice (admin)"
    held = '#queues tr[data-queue="held"]'
    assert text(chromium, f'{held} [data-field="failed"]') == "3"
    assert text(chromium, '#queues tr[data-queue="nightly"] [data-field="state"]') == "paused"
    assert text(chromium, '#queues tr[data-queue="media"] [data-field="workers"]') == "1"
    chromium.execute_script("window.notReloaded = true")
    ui.queue.enqueue_jobs(jobqueue.NewJob("other", queue="held") for _ in range(4))
    browser.wait_for_text(chromium, f'{held} [data-field="pending"]', "4", timeout=15)
    assert chromium.execute_script("return window.notReloaded") is True  # live, no reload
    accessible(chromium)
    browser.screenshot(chromium, shots / "queues.png")


def test_filter_open_a_failed_job_retry_it_and_see_it_done(
    chromium: webdriver.Chrome, ui: UI, shots: pathlib.Path
) -> None:
    jobs = failed_jobs(ui.queue, 3)
    # The worker serves queue media: move one failed job there, so a retry runs.
    target = ui.queue.enqueue_job(
        "test.record",
        {"password": "hunter2"},
        queue="media",
        run_at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1),
    )
    ui.queue.fail_job(target.id, "TimeoutError: the upstream took 30s", final=True)
    sign_in(chromium, "alice", ADMIN)
    chromium.get(f"{ui.url}/jobs")
    chromium.find_element(CSS, 'input[name="queue"]').send_keys("media")
    chromium.find_element(CSS, 'input[name="status"][value="failed"]').click()
    chromium.find_element(CSS, 'input[name="error"]').send_keys("timeout")
    navigate(chromium, "#apply-filter")
    browser.wait_for(
        chromium,
        lambda d: len(d.find_elements(CSS, "#jobs tbody tr[data-job]")) == 1,
        what="one job listed",
    )
    assert chromium.find_element(CSS, "#jobs tbody tr[data-job]").get_attribute("data-job") == str(
        target.id
    )
    accessible(chromium)
    browser.screenshot(chromium, shots / "jobs.png")
    chromium.find_element(CSS, f'a[href="/jobs/{target.id}"]').click()
    browser.wait_for_text(chromium, "#job-status", "failed")
    assert "TimeoutError" in text(chromium, "#job-error")
    assert '"[redacted]"' in text(chromium, "#job-payload")  # redaction, visible
    assert "hunter2" not in chromium.page_source
    accessible(chromium)
    browser.screenshot(chromium, shots / "job.png")
    navigate(chromium, '#job-actions button[value="retry:selected"]')
    assert text(chromium, "#confirm-count") == "1"
    accessible(chromium)
    navigate(chromium, "#confirm")
    browser.wait_for_text(chromium, "#notice", "alice retry: 1 job changed")
    until_status(chromium, "done")
    assert {job.status for job in ui.queue.list_jobs(jobqueue.JobFilter(queue="held"))} == {
        "failed"
    }, "only the one job was retried"
    assert len(jobs) == 3


def test_cancel_a_running_job(chromium: webdriver.Chrome, ui: UI, tmp_path: pathlib.Path) -> None:
    job = ui.queue.enqueue_job("test.hold", {"release": str(tmp_path / "never")}, queue="media")
    sign_in(chromium, "alice", ADMIN)
    chromium.get(f"{ui.url}/jobs/{job.id}")
    until_status(chromium, "running")
    navigate(chromium, '#job-actions button[value="cancel:selected"]')
    assert text(chromium, "#confirm-count") == "1"
    navigate(chromium, "#confirm")
    until_status(chromium, "cancelled")  # the worker was told, and stopped the handler
    (entry,) = ui.queue.list_actions()
    assert (entry.actor, entry.action, entry.jobs) == ("alice", "cancel", 1)


def test_a_bulk_retry_by_filter_then_pause_and_resume_a_queue(
    chromium: webdriver.Chrome, ui: UI, shots: pathlib.Path
) -> None:
    failed_jobs(ui.queue, 7)
    sign_in(chromium, "bob", ADMIN)
    chromium.get(f"{ui.url}/jobs?queue=held&status=failed")
    navigate(chromium, 'button[value="retry:matching"]')
    assert text(chromium, "#confirm-count") == "7"
    assert "queue=held, status=failed" in text(chromium, "#confirm-summary")
    browser.screenshot(chromium, shots / "confirm.png")
    navigate(chromium, "#confirm")
    browser.wait_for_text(chromium, "#notice", "bob retry: 7 jobs changed")
    assert ui.queue.get_queue_stats(queue="held")["pending"] == 7

    chromium.get(f"{ui.url}/queues")
    navigate(chromium, 'button[aria-label="Pause queue held"]')
    assert "queue held (7 jobs pending)" in text(chromium, "#confirm-summary")
    navigate(chromium, "#confirm")
    browser.wait_for_text(chromium, '#queues tr[data-queue="held"] [data-field="state"]', "paused")
    assert ui.queue.paused_queues("held")
    navigate(chromium, 'button[aria-label="Resume queue held"]')
    navigate(chromium, "#confirm")
    browser.wait_for_text(chromium, '#queues tr[data-queue="held"] [data-field="state"]', "running")
    assert not ui.queue.paused_queues("held")

    chromium.get(f"{ui.url}/audit")
    actions = [row.text for row in chromium.find_elements(CSS, "#audit tbody tr")]
    assert [line.split()[5] for line in actions] == ["resume", "pause", "retry"], actions
    accessible(chromium)
    browser.screenshot(chromium, shots / "audit.png")


def test_a_read_only_user_sees_no_actions_and_is_refused_one(
    chromium: webdriver.Chrome, ui: UI
) -> None:
    (job, *_) = failed_jobs(ui.queue, 1)
    sign_in(chromium, "carol", VIEWER)
    chromium.get(f"{ui.url}/jobs/{job.id}")
    assert text(chromium, ".who") == "Signed in as carol (viewer: read-only)"
    assert chromium.find_elements(CSS, "#job-actions") == []
    chromium.get(f"{ui.url}/queues")
    assert chromium.find_elements(CSS, "#queues button") == []
    # Asked anyway, from the page itself: refused, and nothing changes.
    status = chromium.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch("/api/jobs/retry", {method: "POST", headers: {"Content-Type": "application/json"},
                                  body: JSON.stringify({ids: [arguments[0]]})})
          .then(async (answer) => done([answer.status, (await answer.json()).error]));
        """,
        str(job.id),
    )
    assert status[0] == 403
    assert "read-only" in status[1]
    assert ui.queue.get_job_status(job.id).status == "failed"  # type: ignore[union-attr]
    assert ui.queue.list_actions() == []


def test_the_schedules_page(chromium: webdriver.Chrome, ui: UI, shots: pathlib.Path) -> None:
    ui.queue.declare_schedules(
        [
            jobqueue.Schedule("nightly-report", "test.record", cron="0 3 * * *", queue="media"),
            jobqueue.Schedule("heartbeat", "test.record", every=60, queue="media"),
        ]
    )
    sign_in(chromium, "alice", ADMIN)
    chromium.get(f"{ui.url}/schedules")
    rows = [row.text for row in chromium.find_elements(CSS, "#schedules tbody tr")]
    assert [row.split()[0] for row in rows] == ["heartbeat", "nightly-report"], rows
    assert "0 3 * * *" in rows[1]
    accessible(chromium)
    browser.screenshot(chromium, shots / "schedules.png")


def status_of(url: str) -> tuple[int, str]:
    """The status and body of a GET of ``url`` with the admin token."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error)  # not listening yet


def test_the_ui_serves_while_its_database_is_away_and_recovers(database_url: str) -> None:
    """``jobqueue ui`` starts before its database can be reached, answers 503 with the
    reason meanwhile, connects when it can, and rides out the database going away again.
    The database is reached through a relay the test opens and closes."""
    target = node.database_address(database_url)
    relay_port = children.free_port()
    relayed = psycopg.conninfo.make_conninfo(database_url, host="127.0.0.1", port=relay_port)
    ui_port = children.free_port()
    url = f"http://127.0.0.1:{ui_port}"
    env = {"DATABASE_URL": relayed, "JOBQUEUE_UI_ADMIN_TOKEN": ADMIN}
    with started([JOBQUEUE, "ui", "--port", str(ui_port)], env):
        deadline_wait(lambda: status_of(f"{url}/healthz")[0] == 503, "the UI answering 503")
        code, body = status_of(f"{url}/api/queues")
        assert code == 503
        assert "no database connection yet" in body
        relay = node.Forwarder(("127.0.0.1", relay_port), target)
        try:
            deadline_wait(lambda: local_process.answers(f"{url}/healthz"), "the UI connected")
            assert status_of(f"{url}/api/queues")[0] == 200
        finally:
            relay.close()

        def unavailable() -> list[tuple[int, str]] | None:
            answers = [status_of(f"{url}/api/queues"), status_of(f"{url}/healthz")]
            return answers if all(code == 503 for code, _ in answers) else None

        away = waiting.eventually_sync(unavailable, what="503 while the database is away")
        assert "database" in away[0][1], away
        assert "database unavailable" in away[1][1], away
        relay = node.Forwarder(("127.0.0.1", relay_port), target)
        try:
            deadline_wait(lambda: status_of(f"{url}/api/queues")[0] == 200, "the UI back")
        finally:
            relay.close()
