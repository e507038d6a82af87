"""A point is saturated when its arrivals fall behind schedule or its requests in flight keep growing; not when a
target keeps up."""

import numpy as np
import pytest

from serve_app.perf.saturation import assess, behind_schedule, in_flight_trend

RATE = 50.0
SERVICE_S = 0.1


def served(sent: np.ndarray, slots: int | None) -> np.ndarray:
    """Completion times at a target serving `slots` requests at once, each for SERVICE_S (FIFO queue)."""
    if slots is None:
        return sent + SERVICE_S
    free = np.zeros(slots)
    done = np.empty(len(sent))
    for i, at in enumerate(sent):
        slot = int(np.argmin(free))
        done[i] = free[slot] = max(at, free[slot]) + SERVICE_S
    return done


def capped_sends(scheduled: np.ndarray, cap: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed loop: an arrival waits for one of `cap` slots of its own, which free when the target answers."""
    free = np.zeros(cap)
    sent, done = np.empty(len(scheduled)), np.empty(len(scheduled))
    target = np.zeros(slots)
    for i, at in enumerate(scheduled):
        mine = int(np.argmin(free))
        sent[i] = max(at, free[mine])
        slot = int(np.argmin(target))
        done[i] = target[slot] = max(sent[i], target[slot]) + SERVICE_S
        free[mine] = done[i]
    return sent, done


SCHEDULE = np.arange(1, 501) / RATE  # 10 s at 50 req/s


def test_a_target_that_keeps_up_is_not_saturated():
    sent = SCHEDULE + np.random.default_rng(0).uniform(0, 0.005, len(SCHEDULE))  # a few ms of event-loop jitter
    saturation = assess(SCHEDULE, sent, served(sent, slots=8))  # 8 slots of 0.1 s: 80 req/s of capacity
    assert not saturation.saturated and saturation.reasons() == []
    assert saturation.achieved_req_per_s == pytest.approx(RATE, rel=0.01)
    assert saturation.trend.end == pytest.approx(RATE * SERVICE_S, abs=1.5)  # Little's law: 5 in flight


def test_an_open_loop_past_capacity_sends_on_time_and_its_in_flight_requests_grow():
    saturation = assess(SCHEDULE, SCHEDULE, served(SCHEDULE, slots=4))  # 40 req/s of capacity for 50 asked
    assert saturation.achieved_req_per_s == pytest.approx(RATE)
    assert saturation.saturated and saturation.trend.growing
    assert saturation.trend.per_s == pytest.approx(RATE - 40, rel=0.15)  # the queue grows by the excess
    assert saturation.reasons() == [
        f"requests in flight grew from {saturation.trend.start:.3g} to {saturation.trend.end:.3g} "
        f"({saturation.trend.per_s:+.3g}/s)"]


def test_a_closed_loop_past_capacity_falls_behind_its_schedule():
    sent, done = capped_sends(SCHEDULE, cap=4, slots=4)  # at most 4 in flight: 40 req/s
    saturation = assess(SCHEDULE, sent, done)
    assert saturation.saturated and saturation.lagging and not saturation.trend.growing  # the cap holds in flight
    assert saturation.achieved_req_per_s == pytest.approx(40, rel=0.03)
    assert saturation.reasons()[0].startswith("requests went out at 40")


def test_live_a_shard_is_behind_only_with_enough_evidence():
    assert not behind_schedule(elapsed_s=1.0, due=100, sent=10)  # too early to tell
    assert not behind_schedule(elapsed_s=5.0, due=10, sent=1)  # too few arrivals
    assert not behind_schedule(elapsed_s=5.0, due=100, sent=95)
    assert behind_schedule(elapsed_s=5.0, due=100, sent=90)


def test_fewer_than_two_sends_are_not_judged():
    assert assess(SCHEDULE, SCHEDULE[:1], SCHEDULE[:1] + 0.1) is None


def live_samples(rate: float, slots: int, seconds: float, seed: int):
    """What a shard's watch sees: in flight every 0.25 s from the first completion, for Poisson arrivals at `rate`."""
    sent = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, int(rate * seconds * 2)))
    sent = sent[sent < seconds]
    done = np.sort(served(sent, slots))
    times = np.arange(done[0], seconds, 0.25)
    return times, np.searchsorted(sent, times, "right") - np.searchsorted(done, times, "right")


def test_live_a_target_at_half_its_capacity_is_never_called_growing_and_one_at_twice_always_is():
    # 4 slots of 0.1 s: 40 req/s. What the watch sees 2.5 s in, over 200 seeds of Poisson arrivals.
    assert not any(in_flight_trend(*live_samples(20, 4, 2.5, seed)).growing for seed in range(200))
    assert all(in_flight_trend(*live_samples(80, 4, 2.5, seed)).growing for seed in range(200))
