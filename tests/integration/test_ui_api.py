"""The web UI's app (jobqueue_ui) on a real database, through its ASGI interface: who may
do what, the JSON API and the pages' forms, the audit trail, redaction, CSRF, headers, and
bad input. The browser tests (tests/e2e/test_ui_browser.py) drive the same app in Chromium."""

from __future__ import annotations

import base64
import collections.abc
import re
import typing
import urllib.parse

import httpx
import psycopg
import pytest

import jobqueue
from jobqueue_ui import app as ui_app

ADMIN = "admin-token-0123456789"
VIEWER = "viewer-token-0123456789"


def basic(user: str, token: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{token}".encode()).decode()
    return {"authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class Client(typing.Protocol):
    def __call__(self, **config: typing.Any) -> httpx.AsyncClient: ...


@pytest.fixture
async def make_client(queue: jobqueue.Queue) -> collections.abc.AsyncIterator[Client]:
    """An HTTP client of a UI app on the test's queue (tokens ADMIN and VIEWER unless
    ``config`` says otherwise)."""
    clients: list[httpx.AsyncClient] = []

    def make(**config: typing.Any) -> httpx.AsyncClient:
        settings = {
            "database_url": None,
            "host": "0.0.0.0",
            "admin_token": ADMIN,
            "viewer_token": VIEWER,
            **config,
        }
        ui = ui_app.UI(ui_app.Config(**settings))
        ui.queue = queue
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=ui.app()), base_url="http://ui.test"
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(make_client: Client) -> httpx.AsyncClient:
    return make_client()


async def failed_jobs(queue: jobqueue.Queue, count: int, **payload: typing.Any) -> list[str]:
    jobs = await queue.enqueue_jobs(
        jobqueue.NewJob("convert", {"n": n, **payload}, queue="media") for n in range(count)
    )
    for job in jobs:
        await queue.fail_job(job.id, f"boom {job.payload['n']}: disk full", final=True)
    return [str(job.id) for job in jobs]


# --- who may do what -------------------------------------------------------------------------


async def test_every_request_but_healthz_needs_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).text == "ok"
    for path in ("/queues", "/jobs", "/api/queues", "/api/jobs", "/schedules", "/audit"):
        answer = await client.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Basic")
    assert (
        await client.get("/api/queues", headers=bearer("wrong-token-0123456789"))
    ).status_code == 401
    assert (await client.get("/api/queues", headers=basic("eve", "nope"))).status_code == 401
    assert (
        await client.get("/api/queues", headers={"authorization": "Basic %%%"})
    ).status_code == 401
    assert (await client.get("/api/queues", headers=bearer(ADMIN))).status_code == 200
    assert (await client.get("/queues", headers=basic("ann", VIEWER))).status_code == 200


async def test_a_viewer_may_look_but_not_act(
    client: httpx.AsyncClient, queue: jobqueue.Queue
) -> None:
    (job_id,) = await failed_jobs(queue, 1)
    page = await client.get(f"/jobs/{job_id}", headers=basic("ann", VIEWER))
    assert page.status_code == 200
    assert "boom 0" in page.text
    assert "/actions/confirm" not in page.text  # no action offered
    refused = await client.post("/api/jobs/retry", json={"ids": [job_id]}, headers=bearer(VIEWER))
    assert refused.status_code == 403
    assert "read-only" in refused.json()["error"]
    form = await client.post(
        "/actions/apply",
        data={"action": "retry:selected", "id": job_id},
        headers=basic("ann", VIEWER),
    )
    assert form.status_code == 403
    assert (await queue.get_job_status(job_id)).status == "failed"  # type: ignore[union-attr]
    assert await queue.list_actions() == []


def test_without_tokens_the_ui_listens_on_localhost_only() -> None:
    with pytest.raises(jobqueue.ConfigurationError, match="no authentication"):
        ui_app.UI(ui_app.Config(None, "0.0.0.0", None, None))
    with pytest.raises(jobqueue.ConfigurationError, match="16 or more"):
        ui_app.UI(ui_app.Config(None, "0.0.0.0", "short", None))
    with pytest.raises(jobqueue.ConfigurationError, match="must differ"):
        ui_app.UI(ui_app.Config(None, "0.0.0.0", ADMIN, ADMIN))
    for host in ("127.0.0.1", "::1", "localhost"):
        assert ui_app.UI(ui_app.Config(None, host, None, None)).access.open


async def test_an_open_ui_answers_only_to_a_loopback_name(make_client: Client) -> None:
    """A page of another site whose name it rebinds to 127.0.0.1 (DNS rebinding) reaches an
    open UI with its own name in the Host header: refused."""
    client = make_client(host="127.0.0.1", admin_token=None, viewer_token=None)
    assert (await client.get("/api/queues")).status_code == 403  # http://ui.test
    for name in ("localhost:8080", "127.0.0.1:8080", "[::1]:8080"):
        answer = await client.get("/api/queues", headers={"host": name})
        assert answer.status_code == 200, name
    assert (await client.get("/api/queues", headers={"host": "evil.example"})).status_code == 403


async def test_an_open_ui_on_localhost_makes_everyone_admin_but_still_checks_csrf(
    make_client: Client, queue: jobqueue.Queue
) -> None:
    client = make_client(host="127.0.0.1", admin_token=None, viewer_token=None)
    client.base_url = httpx.URL("http://localhost:8080")
    (job_id,) = await failed_jobs(queue, 1)
    refused = await client.post("/api/jobs/retry", json={"ids": [job_id]})
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["error"]
    page = await client.get("/queues")
    token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert token is not None
    done = await client.post(
        "/api/jobs/retry", json={"ids": [job_id]}, headers={"x-csrf-token": token[1]}
    )
    assert done.json()["changed"] == 1
    (entry,) = await queue.list_actions()
    assert (entry.actor, entry.role, entry.action, entry.jobs) == ("local", "admin", "retry", 1)


# --- looking -------------------------------------------------------------------------------


async def test_the_queues_api_shows_counts_throughput_oldest_ready_and_workers(
    client: httpx.AsyncClient, queue: jobqueue.Queue
) -> None:
    await failed_jobs(queue, 2)
    await queue.enqueue_jobs(jobqueue.NewJob("convert", queue="media") for _ in range(3))
    await queue.pause_queue("idle")
    await queue.announce_worker(
        "w-1", queue="media", concurrency=4, started_at=jobqueue_now(), forget_after=60
    )
    overview = (await client.get("/api/queues", headers=bearer(ADMIN))).json()
    by_name = {q["name"]: q for q in overview["queues"]}
    assert set(by_name) == {"media", "idle"}
    media = by_name["media"]
    assert media["counts"] == {"pending": 3, "running": 0, "failed": 2, "done": 0, "cancelled": 0}
    assert (media["enqueued"], media["finished"]) == (5, 2)
    assert media["oldest_ready_age"] is not None
    assert media["oldest_ready_age"] >= 0
    assert (media["workers"], media["slots"], media["busy"]) == (1, 4, 0)
    assert media["paused_at"] is None
    assert by_name["idle"]["paused_at"] is not None
    assert [w["worker_id"] for w in overview["workers"]] == ["w-1"]


def jobqueue_now() -> typing.Any:
    import datetime

    return datetime.datetime.now(datetime.UTC)


async def test_the_jobs_api_filters_and_pages_by_keyset(
    client: httpx.AsyncClient, queue: jobqueue.Queue
) -> None:
    failed = await failed_jobs(queue, 5)
    await queue.enqueue_jobs(jobqueue.NewJob("convert", {"n": 99}, queue="media") for _ in range(4))
    seen: list[str] = []
    after = ""
    while True:
        query = urllib.parse.urlencode({"status": "failed", "queue": "media", "after": after})
        page = (await client.get(f"/api/jobs?{query}", headers=bearer(ADMIN))).json()
        seen += [job["id"] for job in page["jobs"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert sorted(seen) == sorted(failed)
    by_payload = await client.get(
        "/api/jobs?" + urllib.parse.urlencode({"payload": '{"n": 3}'}), headers=bearer(ADMIN)
    )
    assert [job["payload"]["n"] for job in by_payload.json()["jobs"]] == [3]
    by_error = await client.get("/api/jobs?error=BOOM%204", headers=bearer(ADMIN))
    assert [job["payload"]["n"] for job in by_error.json()["jobs"]] == [4]
    count = await client.get("/api/jobs/count?status=pending&queue=media", headers=bearer(ADMIN))
    assert count.json() == {"count": 4, "at_least": False}


async def test_a_small_page_size_pages_the_html_list_too(
    make_client: Client, queue: jobqueue.Queue
) -> None:
    client = make_client(page_size=2)
    ids = await failed_jobs(queue, 5)
    shown: list[str] = []
    url = "/jobs?status=failed"
    while url:
        page = await client.get(url, headers=basic("ann", VIEWER))
        shown += re.findall(r'data-job="([0-9a-f-]+)"', page.text)
        found = re.search(r'href="(/jobs\?[^"]+)" id="next-page"', page.text)
        url = found[1].replace("&amp;", "&") if found else ""
    assert shown == sorted(ids, reverse=True)


async def test_payload_fields_named_in_the_setting_are_redacted_everywhere(
    make_client: Client, queue: jobqueue.Queue
) -> None:
    client = make_client(redact=["$.password", "$..token", "$.cards[*].number"])
    job = await queue.enqueue_job(
        "login",
        {
            "user": "ann",
            "password": "hunter2",
            "nested": {"deep": {"token": "t0k3n"}},
            "cards": [{"number": "4111111111111111", "name": "Ann"}],
        },
    )
    await queue.complete_job(job.id, {"session": {"token": "s3ss10n"}})
    api = (await client.get(f"/api/jobs/{job.id}", headers=bearer(ADMIN))).json()
    assert api["payload"] == {
        "user": "ann",
        "password": "[redacted]",
        "nested": {"deep": {"token": "[redacted]"}},
        "cards": [{"number": "[redacted]", "name": "Ann"}],
    }
    assert api["result"] == {"session": {"token": "[redacted]"}}
    page = await client.get(f"/jobs/{job.id}", headers=bearer(ADMIN))
    listing = await client.get("/api/jobs", headers=bearer(ADMIN))
    for text in (page.text, listing.text):
        for secret in ("hunter2", "t0k3n", "4111111111111111", "s3ss10n"):
            assert secret not in text
    # Filtering by a redacted field would tell its value: refused.
    probe = await client.get(
        "/api/jobs?" + urllib.parse.urlencode({"payload": '{"password": "hunter2"}'}),
        headers=bearer(ADMIN),
    )
    assert probe.status_code == 400
    assert "$.password is redacted" in probe.json()["error"]


async def test_a_jobs_page_shows_its_follow_ups_and_unique_key(
    client: httpx.AsyncClient, queue: jobqueue.Queue
) -> None:
    parent = await queue.enqueue_job("parse", {"book": 1}, unique_key="book:1")
    done = await queue.complete_job(
        parent.id, None, enqueue=[jobqueue.NewJob("embed", {"book": 1}), jobqueue.NewJob("sum")]
    )
    assert done.follow_ups is not None
    assert len(done.follow_ups) == 2
    stored = await queue.get_job_status(parent.id)
    assert stored is not None
    assert stored.follow_ups == done.follow_ups
    page = await client.get(f"/jobs/{parent.id}", headers=bearer(ADMIN))
    for follow_up in done.follow_ups:
        assert f"/jobs/{follow_up}" in page.text
    assert "book:1" in page.text


# --- acting --------------------------------------------------------------------------------


async def test_a_bulk_retry_by_filter_through_the_forms_is_confirmed_counted_and_audited(
    client: httpx.AsyncClient, queue: jobqueue.Queue
) -> None:
    await failed_jobs(queue, 3)
    other = await queue.enqueue_job("convert", queue="other")
    await queue.fail_job(other.id, "boom", final=True)
    who = basic("alice", ADMIN)
    page = await client.get("/jobs?queue=media&status=failed", headers=who)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token is not None
    form = {"csrf": token[1], "action": "retry:matching", "queue": "media", "status": "failed"}
    confirm = await client.post(
        "/actions/confirm", data={**form, "return_to": "/jobs"}, headers=who
    )
    assert re.search(r'id="confirm-count">3<', confirm.text), confirm.text
    assert await queue.list_actions() == []  # nothing done before it is confirmed
    applied = await client.post(
        "/actions/apply", data={**form, "return_to": "/jobs?queue=media"}, headers=who
    )
    assert applied.status_code == 303
    (entry,) = await queue.list_actions()
    assert applied.headers["location"] == f"/jobs?queue=media&done={entry.id}"
    assert (entry.actor, entry.role, entry.action, entry.jobs) == ("alice", "admin", "retry", 3)
    assert entry.filter == {"queue": "media", "statuses": ["failed"]}
    stats = await queue.get_queue_stats(queue="media")
    assert (stats["pending"], stats["failed"]) == (3, 0)
    assert (await queue.get_queue_stats(queue="other"))["failed"] == 1
    audit = await client.get("/audit", headers=who)
    assert f'data-entry="{entry.id}"' in audit.text
    assert "alice (admin)" in audit.text
    notice = await client.get(applied.headers["location"], headers=who)
    assert "alice retry: 3 jobs changed" in notice.text


async def test_a_form_without_its_csrf_token_is_refused(
    client: httpx.AsyncClient, queue: jobqueue.Queue
) -> None:
    (job_id,) = await failed_jobs(queue, 1)
    who = basic("mallory", ADMIN)
    for token in (None, "0" * 64):
        data = {"action": "retry:selected", "id": job_id}
        if token:
            data["csrf"] = token
        answer = await client.post("/actions/apply", data=data, headers=who)
        assert answer.status_code == 403
        assert "CSRF" in answer.text
    viewer_token = ui_app.UI(ui_app.Config(None, "0.0.0.0", ADMIN, VIEWER)).access.csrf_token(
        access_identity("ann", "viewer")
    )  # another identity's token does not do either
    answer = await client.post(
        "/actions/apply",
        data={"action": "retry:selected", "id": job_id, "csrf": viewer_token},
        headers=who,
    )
    assert answer.status_code == 403
    assert (await queue.get_job_status(job_id)).status == "failed"  # type: ignore[union-attr]


def access_identity(actor: str, role: str) -> typing.Any:
    from jobqueue_ui import access

    return access.Identity(actor, access.Role(role), ambient=True)


async def test_api_actions_cancel_delete_pause_and_resume_are_audited(
    client: httpx.AsyncClient, queue: jobqueue.Queue
) -> None:
    pending = await queue.enqueue_jobs(jobqueue.NewJob("convert", queue="media") for _ in range(2))
    admin = bearer(ADMIN)
    cancelled = await client.post(
        "/api/jobs/cancel", json={"filter": {"queue": "media"}}, headers=admin
    )
    assert cancelled.json()["changed"] == 2
    deleted = await client.post(
        "/api/jobs/delete", json={"ids": [str(pending[0].id)]}, headers=admin
    )
    assert deleted.json()["changed"] == 1
    paused = await client.post("/api/queues/media/pause", headers=admin)
    assert paused.json()["paused"] is True
    assert await queue.paused_queues("media")
    resumed = await client.post("/api/queues/media/resume", headers=admin)
    assert resumed.json()["paused"] is False
    assert not await queue.paused_queues("media")
    entries = await queue.list_actions()
    assert [(e.action, e.jobs, e.queue) for e in entries] == [
        ("resume", None, "media"),
        ("pause", None, "media"),
        ("delete", 1, None),
        ("cancel", 2, "media"),
    ]
    assert entries[2].filter == {
        "ids": [str(pending[0].id)],
        "statuses": ["cancelled", "done", "failed"],
    }
    listed = (await client.get("/api/audit", headers=admin)).json()["entries"]
    assert [entry["action"] for entry in listed] == ["resume", "pause", "delete", "cancel"]


# --- what every answer carries, and bad input ------------------------------------------------


async def test_every_answer_carries_the_security_headers_and_its_server_time(
    client: httpx.AsyncClient,
) -> None:
    for path, headers in (
        ("/queues", bearer(ADMIN)),
        ("/api/jobs", bearer(ADMIN)),
        ("/queues", {}),
        ("/static/ui.js", {}),
    ):
        answer = await client.get(path, headers=headers)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert re.fullmatch(r"app;dur=\d+\.\d", answer.headers["server-timing"])
    page = await client.get("/queues", headers=bearer(ADMIN))
    assert "<script>" not in page.text
    assert " on" + "click=" not in page.text
    assert ADMIN not in page.text


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/jobs/not-a-uuid", 404, "not a job id"),
        ("/api/jobs/01900000-0000-7000-8000-000000000000", 404, "no job with id"),
        ("/api/jobs?status=lost", 400, "status: 'lost' is not one of"),
        ("/api/jobs?payload=%7Bnope", 400, "payload: not JSON"),
        ("/api/jobs?created_after=yesterday", 400, "is not a time"),
        ("/api/jobs?after=zzz", 400, "job id"),
        ("/api/audit?before=x", 400, "not an entry number"),
    ],
)
async def test_bad_input_is_a_clear_error(
    client: httpx.AsyncClient, path: str, status: int, message: str
) -> None:
    answer = await client.get(path, headers=bearer(ADMIN))
    assert answer.status_code == status
    assert message in answer.json()["error"]


async def test_bad_actions_are_refused_and_change_nothing(
    client: httpx.AsyncClient, queue: jobqueue.Queue
) -> None:
    (job_id,) = await failed_jobs(queue, 1)
    admin = bearer(ADMIN)
    for path, body in (
        ("/api/jobs/explode", {"ids": [job_id]}),
        ("/api/jobs/retry", {"ids": [job_id], "filter": {}}),
        ("/api/jobs/retry", {"filter": {"colour": "red"}}),
        ("/api/jobs/retry", {"ids": ["nope"]}),
        ("/api/queues/media/explode", {}),
    ):
        answer = await client.post(path, json=body, headers=admin)
        assert answer.status_code in (400, 404), (path, body, answer.text)
    page = await client.get("/jobs", headers=basic("alice", ADMIN))
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token is not None
    elsewhere = await client.post(
        "/actions/apply",
        data={
            "csrf": token[1],
            "action": "retry:selected",
            "id": job_id,
            "return_to": "https://evil.example/",
        },
        headers=basic("alice", ADMIN),
    )
    assert elsewhere.headers["location"].startswith("/queues?done=")  # never another site
    nothing = await client.post(
        "/actions/confirm",
        data={"csrf": token[1], "action": "retry:selected"},
        headers=basic("alice", ADMIN),
    )
    assert nothing.status_code == 400
    assert "no jobs selected" in nothing.text


async def test_the_schedules_page_and_api_list_the_schedules(
    client: httpx.AsyncClient, queue: jobqueue.Queue
) -> None:
    await queue.declare_schedules(
        [jobqueue.Schedule("nightly", "report", cron="0 3 * * *", timezone="Europe/Paris")]
    )
    listed = (await client.get("/api/schedules", headers=bearer(ADMIN))).json()["schedules"]
    assert [(s["name"], s["cron"], s["timezone"]) for s in listed] == [
        ("nightly", "0 3 * * *", "Europe/Paris")
    ]
    page = await client.get("/schedules", headers=bearer(ADMIN))
    assert page.status_code == 200
    assert "Europe/Paris" in page.text


async def test_an_action_cut_short_stays_on_record(
    queue: jobqueue.Queue, conn: psycopg.AsyncConnection[typing.Any]
) -> None:
    """The audit entry is written before the action starts: a delete the database refuses
    midway (here, a trigger) is on record, its count unknown."""
    await failed_jobs(queue, 2)
    await conn.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'deleting jobs is not allowed here'; END $$;"
        " CREATE TRIGGER refuse BEFORE DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    ui = ui_app.UI(ui_app.Config(None, "0.0.0.0", ADMIN, VIEWER))
    ui.queue = queue
    transport = httpx.ASGITransport(app=ui.app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as client:
        answer = await client.post(
            "/api/jobs/delete", json={"filter": {"queue": "media"}}, headers=bearer(ADMIN)
        )
    assert answer.status_code == 500
    (entry,) = await queue.list_actions()
    assert (entry.action, entry.jobs) == ("delete", None)
    assert entry.detail is not None
    assert "cut short" in entry.detail
    assert "deleting jobs is not allowed here" in entry.detail
    assert (await queue.get_queue_stats(queue="media"))["failed"] == 2
