"""The capacity search: the highest load at which enough requests meet the SLO.

Plain Python over probe outcomes (the perf run runs each probe as a test point on its shards and reports here its
good fraction, throughput and mean latency). It brackets the capacity between `low` and `high`, then narrows the
bracket with an estimate from the last failing probe, which overloaded the target. As a rate, the capacity is that
probe's throughput; as concurrent requests, Little's law scales its load by the ratio of the highest passing
probe's latency to its own. A passing estimate is checked just above itself, so a good estimate ends the search in
two more probes; where estimates fall short or do not narrow the bracket, it is halved (geometrically, since
capacities span orders of magnitude).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Probe:
    load: float
    good_fraction: float
    passed: bool
    throughput: float  # requests completed per second
    latency_s: float  # mean latency of its requests


@dataclass
class CapacitySearch:
    low: float
    high: float
    min_goodput: float  # the good fraction a load must reach to pass
    max_probes: int
    integer: bool  # parallel: whole requests in flight; rate: any positive number
    tolerance: float = 0.05  # done when the first failing load is within this of the last passing one
    probes: list[Probe] = field(default_factory=list)

    @property
    def max_passing(self) -> float | None:
        return max((p.load for p in self.probes if p.passed), default=None)

    @property
    def min_failing(self) -> float | None:
        return min((p.load for p in self.probes if not p.passed), default=None)

    def record(self, load: float, good_fraction: float, throughput: float, latency_s: float,
               saturated: bool = False) -> Probe:
        """A probe passes when enough of its requests met the SLO, unless the target did not keep up with its rate
        (serve_app.perf.saturation): then the load it was measured at is not the load asked for."""
        probe = Probe(load, good_fraction, good_fraction >= self.min_goodput and not saturated, throughput, latency_s)
        self.probes.append(probe)
        return probe

    def next_load(self) -> float | None:
        """The load to probe next, or None when the search is over."""
        if len(self.probes) >= self.max_probes:
            return None
        if not self.probes:
            return self.low
        passing, failing = self.max_passing, self.min_failing
        if passing is None:
            return None  # the lowest load already misses the SLO
        if failing is None:
            return None if passing >= self.high else self.high
        if self._narrow(passing, failing):
            return None
        last = self.probes[-1]
        step_up = passing + 1 if self.integer else passing * (1 + self.tolerance)  # is the bracket tight already?
        if not last.passed:
            estimate = self._served(last, passing)
            candidate = step_up if estimate <= passing else estimate
        elif len(self.probes) < 2 or not self.probes[-2].passed:
            candidate = step_up
        else:
            candidate = 0.0  # two passes in a row: the estimates fall short, halve the bracket instead
        candidate = self._round(candidate)
        if not passing < candidate < failing:
            candidate = self._round(math.sqrt(passing * failing))
            if not passing < candidate < failing:  # integers one apart are narrow: caught above
                candidate = self._round((passing + failing) / 2)
        return candidate

    def verdict(self, unit: str) -> str:
        passing, failing = self.max_passing, self.min_failing
        count = f"{len(self.probes)} probe{'s' if len(self.probes) != 1 else ''}"
        if passing is None:
            return f"even the lowest load, {_number(self.low)} {unit}, misses the SLO ({count})"
        if failing is None:
            return (f"the SLO holds up to the highest load tried, {_number(passing)} {unit}: capacity is higher "
                    f"({count})")
        narrow = "" if self._narrow(passing, failing) else f"; not narrowed to {self.tolerance:.0%} within {count}"
        return (f"capacity {_number(passing)} {unit}: the SLO holds there and fails at {_number(failing)} {unit} "
                f"({count}{narrow})")

    def _served(self, overloaded: Probe, passing: float) -> float:
        """The most load the target serves, estimated from a probe that overloaded it."""
        if not self.integer:
            return overloaded.throughput
        # Little's law at both probes: concurrency = throughput x latency, and past capacity the throughput stays
        # what the target serves at most. So the concurrency it serves at the unloaded latency is the overloaded
        # concurrency scaled by the two latencies (the overloaded probe's throughput itself reads low: its
        # warm-up and drain sit in the test's duration).
        unloaded = next(p for p in self.probes if p.passed and p.load == passing)
        if overloaded.latency_s <= 0:
            return 0.0
        return overloaded.load * unloaded.latency_s / overloaded.latency_s

    def _narrow(self, passing: float, failing: float) -> bool:
        return failing - passing <= 1 if self.integer else failing <= passing * (1 + self.tolerance)

    def _round(self, load: float) -> float:
        return float(round(load)) if self.integer else round(load, 3)


def _number(value: float) -> str:
    return f"{value:g}"
