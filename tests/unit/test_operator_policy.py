"""The operator's scaling policy (K2): pure, so every case runs without a cluster or a clock."""

from __future__ import annotations

import pytest

from jobqueue_operator import policy

SCALING = policy.Scaling(min_replicas=0, max_replicas=5, target_jobs_per_replica=10)


def decide(
    seen: policy.Observation,
    current: int,
    scaling: policy.Scaling = SCALING,
    state: policy.ScaleState | None = None,
    now: float = 0.0,
) -> tuple[policy.Decision, policy.ScaleState]:
    return policy.decide(scaling, seen, current, state or policy.ScaleState(), now)


@pytest.mark.parametrize(
    ("ready", "running", "due_soon", "current", "replicas"),
    [
        (0, 0, 0, 0, 0),  # idle stays at zero
        (1, 0, 0, 0, 1),  # one job wakes a queue at zero
        (10, 0, 0, 0, 1),
        (11, 0, 0, 1, 2),  # ceil
        (5, 5, 5, 1, 2),  # running and due-soon jobs count
        (500, 0, 0, 1, 5),  # clamped to maxReplicas
        (0, 0, 3, 0, 1),  # pre-scale for delayed jobs coming due
    ],
)
def test_replicas_follow_the_load_within_bounds(
    ready: int, running: int, due_soon: int, current: int, replicas: int
) -> None:
    decision, _ = decide(policy.Observation(ready, running, due_soon), current)
    assert decision.replicas == replicas
    assert decision.direction == (
        policy.UP if replicas > current else policy.NONE if replicas == current else policy.DOWN
    )


def test_the_reason_gives_the_numbers() -> None:
    decision, _ = decide(policy.Observation(23, 4, 1), 1)
    assert decision.reason == (
        "1 -> 3 replicas: 23 ready + 4 running + 1 due soon = 28 jobs at 10 per replica"
    )


def test_activation_threshold_holds_a_queue_at_zero() -> None:
    scaling = policy.Scaling(max_replicas=5, activation_threshold=3)
    decision, _ = decide(policy.Observation(3, 0), 0, scaling)
    assert decision.replicas == 0
    assert "not above the activation threshold of 3" in decision.reason
    assert decide(policy.Observation(4, 0), 0, scaling)[0].replicas == 1
    # Once running, the threshold no longer applies: one job keeps one worker.
    assert decide(policy.Observation(1, 0), 1, scaling)[0].replicas == 1


def test_min_replicas_keeps_workers_when_idle() -> None:
    scaling = policy.Scaling(min_replicas=2, max_replicas=5)
    decision, _ = decide(policy.Observation(0, 0), 2, scaling)
    assert (decision.replicas, decision.direction) == (2, policy.NONE)


def test_scale_down_waits_for_the_delay_then_goes_to_the_highest_count_wanted() -> None:
    scaling = policy.Scaling(max_replicas=10, target_jobs_per_replica=10, scale_down_delay=60)
    state = policy.ScaleState()
    decision, state = decide(policy.Observation(0, 20), 5, scaling, state, now=0)
    assert (decision.replicas, decision.direction) == (5, policy.NONE)
    assert "scaling down after 60s more" in decision.reason
    decision, state = decide(policy.Observation(0, 30), 5, scaling, state, now=30)
    assert decision.replicas == 5  # 3 wanted now, 2 before: still waiting
    decision, state = decide(policy.Observation(0, 0), 5, scaling, state, now=60)
    assert (decision.replicas, decision.direction) == (3, policy.DOWN)
    assert state == policy.ScaleState()


def test_more_work_during_the_delay_cancels_the_scale_down() -> None:
    scaling = policy.Scaling(max_replicas=10, scale_down_delay=60)
    _, state = decide(policy.Observation(0, 0), 3, scaling, now=0)
    assert state.lower_since == 0
    decision, state = decide(policy.Observation(30, 0), 3, scaling, state, now=30)
    assert (decision.replicas, state) == (3, policy.ScaleState())
    decision, state = decide(policy.Observation(0, 0), 3, scaling, state, now=61)
    assert decision.direction == policy.NONE  # the delay starts again


def test_idle_goes_to_zero_after_the_delay() -> None:
    scaling = policy.Scaling(max_replicas=10, scale_down_delay=5)
    _, state = decide(policy.Observation(0, 0), 2, scaling, now=100)
    decision, _ = decide(policy.Observation(0, 0), 2, scaling, state, now=105)
    assert (decision.replicas, decision.direction) == (0, policy.DOWN)


def test_a_count_outside_the_bounds_is_corrected_at_once() -> None:
    scaling = policy.Scaling(min_replicas=1, max_replicas=3, scale_down_delay=600)
    decision, _ = decide(policy.Observation(0, 0), 7, scaling)
    assert (decision.replicas, decision.direction) == (1, policy.DOWN)
    assert decision.reason.startswith("7 replicas is outside the bounds")
    decision, _ = decide(policy.Observation(0, 0), 0, scaling)
    assert (decision.replicas, decision.direction) == (1, policy.UP)


def test_from_spec_reads_the_camel_case_fields() -> None:
    scaling = policy.Scaling.from_spec(
        {"minReplicas": 1, "maxReplicas": 4, "scaleDownDelaySeconds": 30, "pollIntervalSeconds": 2}
    )
    assert scaling == policy.Scaling(
        min_replicas=1, max_replicas=4, scale_down_delay=30, poll_interval=2
    )
    assert policy.Scaling.from_spec(None) == policy.Scaling()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"minReplicas": 5, "maxReplicas": 2}, r"minReplicas \(5\) is above maxReplicas \(2\)"),
        ({"targetJobsPerReplica": 0}, "targetJobsPerReplica must be 1 or more"),
        ({"maxReplica": 3}, "unknown scaling fields: maxReplica"),
        ({"maxReplicas": "3"}, "scaling.maxReplicas must be a number"),
        ({"pollIntervalSeconds": 0}, "pollIntervalSeconds must be above 0"),
    ],
)
def test_from_spec_refuses_nonsense(spec: dict[str, object], message: str) -> None:
    with pytest.raises(policy.SpecError, match=message):
        policy.Scaling.from_spec(spec)


def test_a_paused_queue_is_not_scaled_up_for_its_backlog() -> None:
    paused = policy.Observation(ready=500, running=0, due_soon=20, paused=True)
    decision, _ = decide(paused, 0)
    assert (decision.replicas, decision.direction) == (0, policy.NONE)
    assert decision.reason.startswith("0 replicas: queue paused: 0 ready + 0 running")
    # Its running jobs keep their workers; the rest go after the usual delay.
    decision, state = decide(policy.Observation(500, 12, 0, paused=True), 5)
    assert (decision.replicas, decision.direction) == (5, policy.NONE)
    assert state.lower_wanted == 2
    # Resumed, the backlog counts again.
    assert decide(policy.Observation(500, 12, 0), 2)[0].replicas == 5
