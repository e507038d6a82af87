"""Is a test point's target keeping up with the load asked of it? Pure arithmetic over send and completion times.

Two signs, either one enough: the requests went out slower than scheduled (achieved arrival rate below
MIN_ARRIVAL_RATIO of the requested one: with `parallel` capping what is in flight, arrivals wait for a slot), or the
requests in flight keep growing (open loop: arrivals go out on time, and queue up at a target that cannot serve
them). The same judgement runs live in each shard, on its own sends, where `stop_on_saturation` ends the point early
(serve_app.perf.runner), and over the merged records of every shard for the point's result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_ARRIVAL_RATIO = 0.95
# A live judgement waits for this much evidence, so that the start-up burst and a few late sends do not end a point.
MIN_OBSERVED_S = 2.0
MIN_OBSERVED_ARRIVALS = 20
# In-flight counts sampled over the send window for the trend.
TREND_SAMPLES = 60
MIN_IN_FLIGHT_RISE = 8.0


@dataclass(frozen=True)
class InFlightTrend:
    start: float  # mean in flight over the first third of the samples
    end: float  # ... and over the last third
    per_s: float  # least-squares slope

    @property
    def growing(self) -> bool:
        """In flight at least doubled, by at least MIN_IN_FLIGHT_RISE requests. A target that keeps up holds a
        steady level (Little's law: rate x latency) that fluctuates by about its square root; one that does not
        gains the excess arrivals every second, without bound."""
        return self.end - self.start >= max(MIN_IN_FLIGHT_RISE, self.start) and self.per_s > 0


def in_flight_trend(times: np.ndarray, in_flight: np.ndarray) -> InFlightTrend:
    """The trend of in-flight counts sampled at `times` (s), once the first requests have completed (before that
    the count only fills up to its steady level)."""
    if len(times) < 6:
        return InFlightTrend(0.0, 0.0, 0.0)
    third = len(times) // 3
    slope = float(np.polyfit(times, in_flight, 1)[0]) if np.ptp(times) > 0 else 0.0
    return InFlightTrend(float(np.mean(in_flight[:third])), float(np.mean(in_flight[-third:])), slope)


def sampled_in_flight(sent: np.ndarray, completed: np.ndarray, samples: int = TREND_SAMPLES):
    """In-flight counts on a grid over the send window, from the first completion (sent and completed: sorted times
    of the same requests)."""
    if len(sent) < 2 or len(completed) == 0:
        return np.empty(0), np.empty(0)
    start, end = max(sent[0], completed[0]), sent[-1]
    if end <= start:
        return np.empty(0), np.empty(0)
    grid = np.linspace(start, end, samples)
    counts = np.searchsorted(sent, grid, "right") - np.searchsorted(completed, grid, "right")
    return grid - sent[0], counts.astype(float)


@dataclass(frozen=True)
class Saturation:
    requested_req_per_s: float  # the schedule's rate over the arrivals that went out
    achieved_req_per_s: float  # the rate they went out at
    trend: InFlightTrend

    @property
    def lagging(self) -> bool:
        return self.achieved_req_per_s < MIN_ARRIVAL_RATIO * self.requested_req_per_s

    @property
    def saturated(self) -> bool:
        return self.lagging or self.trend.growing

    def reasons(self) -> list[str]:
        reasons = []
        if self.lagging:
            reasons.append(f"requests went out at {self.achieved_req_per_s:.4g} req/s, under {MIN_ARRIVAL_RATIO:.0%} "
                           f"of the {self.requested_req_per_s:.4g} req/s scheduled")
        if self.trend.growing:
            reasons.append(f"requests in flight grew from {self.trend.start:.3g} to {self.trend.end:.3g} "
                           f"({self.trend.per_s:+.3g}/s)")
        return reasons


def assess(scheduled: np.ndarray, sent: np.ndarray, completed: np.ndarray) -> Saturation | None:
    """Judge a point (or a shard) from its schedule (offsets, s) and the send and completion times of its requests
    (any clock: only differences count). The rate compares the span of the first n arrivals scheduled with the span
    of the n that went out; None with fewer than two sends, or sends all at one instant."""
    sent, completed = np.sort(sent), np.sort(completed)
    n = min(len(sent), len(scheduled))
    if n < 2:
        return None
    scheduled = np.sort(scheduled)
    requested_span, achieved_span = scheduled[n - 1] - scheduled[0], sent[n - 1] - sent[0]
    if requested_span <= 0 or achieved_span <= 0:
        return None
    return Saturation((n - 1) / requested_span, (n - 1) / achieved_span,
                      in_flight_trend(*sampled_in_flight(sent, completed)))


def behind_schedule(elapsed_s: float, due: int, sent: int) -> bool:
    """Live: at `elapsed_s` into its schedule a shard had `due` arrivals due and had sent `sent` of them."""
    if elapsed_s < MIN_OBSERVED_S or due < MIN_OBSERVED_ARRIVALS:
        return False
    return sent < MIN_ARRIVAL_RATIO * due - 1  # one arrival's jitter is not a lag
