"""The web UI's pure parts: redaction paths, credentials and CSRF tokens, form filters,
and the throughput measured between readings."""

from __future__ import annotations

import base64
import datetime
import urllib.parse

import pytest

import jobqueue
from jobqueue_ui import access, app, filters, redaction

R = redaction.REDACTED
PAYLOAD = {
    "user": "ann",
    "password": "p",
    "card": {"number": "4111", "cvc": "123"},
    "items": [{"token": "a", "n": 1}, {"token": "b", "n": 2}],
    "deep": {"x": [{"secret": 1}, {"y": {"secret": 2}}]},
    "odd key": "o",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.password", {**PAYLOAD, "password": "[redacted]"}),
        ("$.card.number", {**PAYLOAD, "card": {"number": "[redacted]", "cvc": "123"}}),
        ("$.card", {**PAYLOAD, "card": "[redacted]"}),
        (
            "$.items[*].token",
            {
                **PAYLOAD,
                "items": [{"token": "[redacted]", "n": 1}, {"token": "[redacted]", "n": 2}],
            },
        ),
        (
            "$.items[1].n",
            {**PAYLOAD, "items": [{"token": "a", "n": 1}, {"token": "b", "n": "[redacted]"}]},
        ),
        (
            "$..secret",
            {**PAYLOAD, "deep": {"x": [{"secret": "[redacted]"}, {"y": {"secret": "[redacted]"}}]}},
        ),
        ("$['odd key']", {**PAYLOAD, "odd key": "[redacted]"}),
        ("$.missing.field", PAYLOAD),
        ("$.items[9]", PAYLOAD),
        ("$.user.name", PAYLOAD),  # a string has no members
    ],
)
def test_a_path_redacts_what_it_names_and_nothing_else(path: str, expected: object) -> None:
    redactor = redaction.Redactor([path])
    assert redactor.redact(PAYLOAD) == expected
    assert PAYLOAD["password"] == "p"  # the original is left alone


def test_redaction_leaves_values_that_are_not_objects_alone() -> None:
    redactor = redaction.Redactor(["$.password", "$..token"])
    for value in (None, 3, "text", [1, 2], {"other": 1}):
        assert redactor.redact(value) == value


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("password", "must start with \\$"),
        ("$", "names the whole value"),
        ("$.a[", "cannot read"),
        ("$.a b", "cannot read"),
        ("$[-1]", "cannot read"),
    ],
)
def test_a_bad_path_is_a_clear_error(path: str, message: str) -> None:
    with pytest.raises(redaction.PathError, match=message):
        redaction.Redactor([path])


def test_a_containment_filter_on_a_redacted_field_is_found() -> None:
    redactor = redaction.Redactor(["$.password", "$..token"])
    assert redactor.touched_by({"password": "x"}) == "$.password"
    assert redactor.touched_by({"a": {"b": [{"token": "t"}]}}) == "$..token"
    assert redactor.touched_by({"user": "ann"}) is None


ADMIN = "a" * 20
VIEWER = "v" * 20


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_give_an_identity_and_a_role() -> None:
    gate = access.Access(admin_token=ADMIN, viewer_token=VIEWER, host="0.0.0.0")
    assert gate.identify(f"Bearer {ADMIN}") == access.Identity("admin", access.Role.ADMIN, False)
    assert gate.identify(f"bearer {VIEWER}") == access.Identity("viewer", access.Role.VIEWER, False)
    assert gate.identify(basic("ann", ADMIN)) == access.Identity("ann", access.Role.ADMIN, True)
    assert gate.identify(basic("", VIEWER)) == access.Identity("viewer", access.Role.VIEWER, True)
    assert gate.identify(basic("bad\nname", ADMIN)) == access.Identity(
        "admin", access.Role.ADMIN, True
    )  # a user name that would forge log or audit lines is not taken
    for wrong in (None, "", f"Bearer {ADMIN}x", basic("ann", "x" * 20), "Basic !!", "Token x"):
        assert gate.identify(wrong) is None


def test_csrf_tokens_belong_to_one_identity_and_survive_a_restart() -> None:
    gate = access.Access(admin_token=ADMIN, viewer_token=VIEWER, host="0.0.0.0")
    ann = access.Identity("ann", access.Role.ADMIN, ambient=True)
    bob = access.Identity("bob", access.Role.ADMIN, ambient=True)
    token = gate.csrf_token(ann)
    assert gate.csrf_valid(ann, token)
    assert not gate.csrf_valid(bob, token)
    assert not gate.csrf_valid(ann, None)
    assert not gate.csrf_valid(ann, token[:-1] + "0")
    again = access.Access(admin_token=ADMIN, viewer_token=VIEWER, host="0.0.0.0")
    assert again.csrf_valid(ann, token)  # another replica, or after a restart
    other = access.Access(admin_token=ADMIN + "x", viewer_token=VIEWER, host="0.0.0.0")
    assert not other.csrf_valid(ann, token)  # a rotated secret ends old forms
    assert gate.csrf_valid(access.Identity("api", access.Role.ADMIN, ambient=False), None)


def test_loopback_addresses() -> None:
    assert all(
        access.is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost")
    )
    assert not any(access.is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))


def test_a_form_filter_reads_the_fields_and_writes_them_back() -> None:
    given = [
        ("queue", "books"),
        ("status", "failed"),
        ("status", "pending"),
        ("type", "parse, embed"),
        ("created_after", "2026-12-07T09:30"),
        ("error", "disk"),
        ("payload", '{"bookId": 7}'),
        ("after", "ignored"),
        ("queue", "second ignored"),
        ("error", ""),
    ]
    form = filters.parse(given)
    assert form.job_filter == jobqueue.JobFilter(
        statuses=["pending", "failed"],
        types=["parse", "embed"],
        queue="books",
        created_after=datetime.datetime(2026, 12, 7, 9, 30, tzinfo=datetime.UTC),
        error_contains="disk",
        payload_contains={"bookId": 7},
    )
    back = urllib.parse.parse_qsl(form.query_string())
    assert filters.parse(back).job_filter == form.job_filter
    assert filters.parse([]).job_filter == jobqueue.JobFilter()
    assert filters.parse([]).describe() == "every job"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([("status", "lost")], "status: 'lost' is not one of"),
        ([("payload", "{")], "payload: not JSON"),
        ([("created_before", "last tuesday")], "created_before: 'last tuesday' is not a time"),
    ],
)
def test_a_bad_form_filter_names_its_field(given: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(filters.FilterError, match=message):
        filters.parse(given)


def test_a_json_filter_takes_the_job_filters_fields_only() -> None:
    assert filters.from_json({"queue": "q", "created_after": "2026-01-01"}) == jobqueue.JobFilter(
        queue="q", created_after=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    )
    with pytest.raises(filters.FilterError, match="unknown field 'colour'"):
        filters.from_json({"colour": "red"})
    with pytest.raises(filters.FilterError, match="a JSON object"):
        filters.from_json(["queue"])


def summary(at: float, enqueued: int, finished: int) -> jobqueue.QueueSummary:
    return jobqueue.QueueSummary(
        name="q",
        counts={},
        enqueued=enqueued,
        finished=finished,
        oldest_ready_at=None,
        paused_at=None,
        workers=0,
        slots=0,
        measured_at=datetime.datetime.fromtimestamp(at, datetime.UTC),
    )


def test_throughput_is_the_counters_change_over_the_last_minute() -> None:
    throughput = app.Throughput()
    assert throughput.rates(summary(1000.0, 100, 50)) == (None, None)  # one reading
    assert throughput.rates(summary(1000.5, 110, 55)) == (None, None)  # too close
    assert throughput.rates(summary(1010.0, 200, 150)) == (10.0, 10.0)
    # A minute on, the first readings have left the window.
    assert throughput.rates(summary(1070.0, 800, 150)) == (10.0, 0.0)
    # The counters only grow; were they reset (a TRUNCATE), no negative rate is shown.
    assert throughput.rates(summary(1080.0, 0, 0)) == (0.0, 0.0)
