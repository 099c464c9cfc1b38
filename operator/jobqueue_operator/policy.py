"""How many workers a queue should have: the scaling policy (K2), pure and clock-free.

The operator observes a queue (jobs ready now, running, and delayed jobs falling due within
the next poll) and the Deployment's current replicas, and ``decide`` answers:

- the load is ``ready + running + due_soon``, and each replica should carry
  ``target_jobs_per_replica`` of it: ``ceil(load / target)``, clamped to
  ``[min_replicas, max_replicas]``;
- from zero replicas, only when more than ``activation_threshold`` jobs are ready or due
  (a trickle below it waits for a poll rather than waking a pod per job);
- up at once; down only after a lower count has been wanted for ``scale_down_delay``
  seconds (so a queue that empties between two bursts keeps its workers), then to the
  highest count wanted during that time; to zero when idle and ``min_replicas`` is 0;
- a current count outside the bounds (a spec changed, a hand edit) is brought inside at once.

State between calls (since when a lower count has been wanted) is passed in and returned,
and time is a parameter, so the tests run any sequence without waiting.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import typing

UP: typing.Final = "up"
DOWN: typing.Final = "down"
NONE: typing.Final = "none"


class SpecError(ValueError):
    """The ``scaling`` part of a spec is unusable (the CRD's schema should have said so)."""


@dataclasses.dataclass(frozen=True)
class Scaling:
    """``spec.scaling`` of a ``JobQueue``, in Python names; times in seconds."""

    min_replicas: int = 0
    max_replicas: int = 10
    target_jobs_per_replica: int = 10
    activation_threshold: int = 0
    scale_down_delay: float = 300.0
    poll_interval: float = 10.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1:
            raise SpecError("minReplicas must be 0 or more and maxReplicas 1 or more")
        if self.min_replicas > self.max_replicas:
            raise SpecError(
                f"minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})"
            )
        if self.target_jobs_per_replica < 1:
            raise SpecError("targetJobsPerReplica must be 1 or more")
        if self.activation_threshold < 0 or self.scale_down_delay < 0:
            raise SpecError("activationThreshold and scaleDownDelaySeconds must be 0 or more")
        if self.poll_interval <= 0:
            raise SpecError("pollIntervalSeconds must be above 0")

    @classmethod
    def from_spec(cls, scaling: collections.abc.Mapping[str, typing.Any] | None) -> Scaling:
        """From ``spec["scaling"]`` (camelCase keys; missing ones take the defaults)."""
        given = dict(scaling or {})
        names = {
            "minReplicas": "min_replicas",
            "maxReplicas": "max_replicas",
            "targetJobsPerReplica": "target_jobs_per_replica",
            "activationThreshold": "activation_threshold",
            "scaleDownDelaySeconds": "scale_down_delay",
            "pollIntervalSeconds": "poll_interval",
        }
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise SpecError(f"unknown scaling fields: {', '.join(unknown)}")
        values: dict[str, typing.Any] = {}
        for key, name in names.items():
            if key in given:
                value = given[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise SpecError(f"scaling.{key} must be a number, not {value!r}")
                values[name] = value
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the queue holds: jobs ready now, running, and delayed ones falling due soon;
    and whether it is paused (then only its running jobs need workers)."""

    ready: int
    running: int
    due_soon: int = 0
    paused: bool = False


@dataclasses.dataclass(frozen=True)
class Decision:
    replicas: int
    direction: str  # UP, DOWN or NONE
    reason: str  # a sentence with the numbers, for the Event and the status


@dataclasses.dataclass(frozen=True)
class ScaleState:
    """Since when (``now`` of ``decide``) a count below the current one has been wanted,
    and the highest count wanted since then."""

    lower_since: float | None = None
    lower_wanted: int = 0


def wanted(scaling: Scaling, seen: Observation, current: int) -> tuple[int, str]:
    """The replicas the load calls for, within bounds, and why."""
    if seen.paused:  # workers claim nothing from it: only the jobs still running need them
        seen = Observation(ready=0, running=seen.running, due_soon=0)
        count, why = wanted(scaling, seen, current)
        return count, f"queue paused: {why}"
    load = seen.ready + seen.running + seen.due_soon
    raw = math.ceil(load / scaling.target_jobs_per_replica)
    why = (
        f"{seen.ready} ready + {seen.running} running + {seen.due_soon} due soon = {load} jobs"
        f" at {scaling.target_jobs_per_replica} per replica"
    )
    if current == 0 and seen.ready + seen.due_soon <= scaling.activation_threshold:
        raw = 0
        if load:
            why += f", not above the activation threshold of {scaling.activation_threshold}"
    count = min(max(raw, scaling.min_replicas), scaling.max_replicas)
    if count != raw:
        why += f", kept within {scaling.min_replicas}..{scaling.max_replicas}"
    return count, why


def decide(
    scaling: Scaling, seen: Observation, current: int, state: ScaleState, now: float
) -> tuple[Decision, ScaleState]:
    """The replicas to run now, and the state to pass to the next call."""
    count, why = wanted(scaling, seen, current)
    if current < scaling.min_replicas or current > scaling.max_replicas:
        direction = UP if count > current else DOWN
        return Decision(count, direction, f"{current} replicas is outside the bounds: {why}"), (
            ScaleState()
        )
    if count > current:
        return Decision(count, UP, f"{current} -> {count} replicas: {why}"), ScaleState()
    if count == current:
        return Decision(current, NONE, f"{current} replicas: {why}"), ScaleState()
    if state.lower_since is None:
        state = ScaleState(lower_since=now, lower_wanted=count)
    else:
        state = ScaleState(state.lower_since, max(state.lower_wanted, count))
    held = now - state.lower_since if state.lower_since is not None else 0.0
    if held < scaling.scale_down_delay:
        remaining = scaling.scale_down_delay - held
        return (
            Decision(
                current,
                NONE,
                f"{current} replicas, {state.lower_wanted} wanted for {held:.0f}s;"
                f" scaling down after {remaining:.0f}s more: {why}",
            ),
            state,
        )
    target = state.lower_wanted
    return (
        Decision(
            target,
            DOWN,
            f"{current} -> {target} replicas after {held:.0f}s of less work: {why}",
        ),
        ScaleState(),
    )
