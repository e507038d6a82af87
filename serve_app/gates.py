"""Gates: the CLI's pass/fail rules on a job's result, which become a CI step's exit code, its JUnit test cases
and its run page summary.

A gate holds one value of the result to a limit, from above (`--max`) or below (`--min`, `--min-score`). An eval
gate measures its dataset's score once; a perf gate measures its metric at every test point of the sweep, and
each measurement is an `Outcome` with its margin. A regression gate (`--max-drop`, `--max-increase`,
`--max-decrease`) holds the change from a baseline job instead, read from the service's comparison of the two.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A result -> the measured value at each test point (None: the eval's only one); a value is None when missing.
Measure = Callable[[dict[str, Any]], dict[str | None, float | None]]


class InvalidGate(ValueError):
    """A gate that could never be checked: refused before anything is submitted."""


@dataclass(frozen=True)
class Gate:
    name: str  # a dataset (eval); an evalscope metric, or a percentile column @ a row (perf)
    limit: float
    at_most: bool  # True: the value may not exceed the limit; False: it may not fall below it
    measure: Measure
    unit: str = ""  # "%" for a relative change

    @property
    def condition(self) -> str:
        return f"{'<=' if self.at_most else '>='} {number(self.limit)}{self.unit}"

    def evaluate(self, result: dict[str, Any]) -> list[Outcome]:
        return [Outcome(self, point, value) for point, value in self.measure(result).items()]


# A comparison -> at each test point (None: the eval's dataset), the change, whether it is significant, and a note.
Reading = tuple[float | None, bool, str]


@dataclass(frozen=True)
class RegressionGate(Gate):
    """A limit on the change from a baseline, measured on GET /api/v1/compare's answer rather than on the result."""

    def evaluate(self, comparison: dict[str, Any]) -> list[Outcome]:
        return [Outcome(self, point, value, significant, note)
                for point, (value, significant, note) in self.measure(comparison).items()]


@dataclass(frozen=True)
class Outcome:
    """One measurement of a gate: at a perf test point, or the eval's score."""

    gate: Gate
    point: str | None
    value: float | None
    significant: bool = True  # False: past the limit, but within the comparison's noise (its interval holds 0)
    note: str = ""  # how the value was measured, where that matters (the interval)

    @property
    def margin(self) -> float | None:
        """How far inside the limit the value is; negative when past it, None when there is no value."""
        if self.value is None:
            return None
        return self.gate.limit - self.value if self.gate.at_most else self.value - self.gate.limit

    @property
    def passed(self) -> bool:
        return self.margin is not None and (self.margin >= 0 or not self.significant)

    @property
    def title(self) -> str:
        """The gate and where it was measured, without the value: stable from run to run, so that a CI's test
        history can follow it."""
        where = f" at {self.point}" if self.point else ""
        return f"{self.gate.name} {self.gate.condition}{where}"

    def describe(self) -> str:
        where = f"{self.point}: " if self.point else ""
        note = f" ({self.note})" if self.note else ""
        if self.value is None:
            return f"{where}no {self.gate.name!r} in the {self.source}{note}"
        bound = "maximum" if self.gate.at_most else "minimum"
        value, limit = number(self.value) + self.gate.unit, number(self.gate.limit) + self.gate.unit
        if self.margin >= 0:
            return f"{where}{self.gate.name} = {value} is within the {bound} {limit}{note}"
        side = "above" if self.gate.at_most else "below"
        excess = number(-self.margin) + self.gate.unit
        past = f"{where}{self.gate.name} = {value} is {side} the {bound} {limit} by {excess}"
        return past + (f", but not significantly{note}" if not self.significant else note)

    @property
    def source(self) -> str:
        return "comparison with the baseline" if isinstance(self.gate, RegressionGate) else "result"


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def eval_gates(min_scores: list[str]) -> list[Gate]:
    gates = []
    for spec in min_scores:
        dataset, limit = _split(spec)
        gates.append(Gate(dataset, limit, at_most=False, measure=functools.partial(_score, dataset)))
    return gates


def perf_gates(maxima: list[str], minima: list[str]) -> list[Gate]:
    gates = []
    for spec, at_most in [(spec, True) for spec in maxima] + [(spec, False) for spec in minima]:
        name, limit = _split(spec)
        _check_metric_name(name)
        gates.append(Gate(name, limit, at_most, measure=functools.partial(_perf_values, name)))
    return gates


GOOD_FRACTION = "good fraction"


def goodput_gate(min_fraction: float, slo: dict[str, float]) -> Gate:
    """Every test point's fraction of requests that met the slo is at least `min_fraction`."""
    if not slo:
        raise InvalidGate("--min-goodput needs an slo to hold requests to, e.g. --slo ttft_ms=500")
    if not 0 < min_fraction <= 1:
        raise InvalidGate(f"--min-goodput is a fraction of the requests in (0, 1], e.g. 0.99; got {min_fraction}")
    return Gate(GOOD_FRACTION, min_fraction, at_most=False, measure=_good_fractions)


CAPACITY = "capacity"


def capacity_gate(min_capacity: float, search: str | None) -> Gate:
    """The capacity a search found (its highest passing load) is at least `min_capacity`."""
    if not search:
        raise InvalidGate("--min-capacity gates what a search finds: give --search parallel or --search rate")
    return Gate(CAPACITY, min_capacity, at_most=False, measure=_capacity)


def drop_gates(max_drops: list[str], datasets: list[str]) -> list[RegressionGate]:
    """`--max-drop DATASET=X`: the dataset's score may fall by more than X from the baseline's only when the fall is
    not significant (its 95 % paired bootstrap interval holds no change)."""
    gates = []
    for spec in max_drops:
        dataset, limit = _split(spec)
        if dataset not in datasets:
            raise InvalidGate(f"--max-drop names {dataset!r}, which this eval does not run ({', '.join(datasets)})")
        gates.append(RegressionGate(f"{dataset} drop from baseline", limit, at_most=True,
                                    measure=functools.partial(_drop, dataset)))
    return gates


def change_gates(max_increases: list[str], max_decreases: list[str]) -> list[RegressionGate]:
    """`--max-increase "TTFT (ms)@99%"=10%` (or an absolute =50): how far each test point's value may rise from
    the baseline's; `--max-decrease "Req Throughput (req/s)"=5%`: how far it may fall."""
    gates = []
    for specs, direction, sign in ((max_increases, "increase", 1), (max_decreases, "decrease", -1)):
        for spec in specs:
            name, _, value = spec.rpartition("=")
            relative = value.strip().endswith("%")
            _, limit = _split(f"{name}={value.strip().removesuffix('%')}")
            _check_metric_name(name.strip())
            gates.append(RegressionGate(f"{name.strip()} {direction} from baseline", limit, at_most=True,
                                        measure=functools.partial(_change, name.strip(), sign, relative),
                                        unit="%" if relative else ""))
    return gates


def slo_limits(specs: list[str]) -> dict[str, float]:
    """`--slo NAME=MS` flags as the request's slo; a wrong name is left for the service's 400 to list."""
    return dict(_split(spec) for spec in specs)


def perf_value(outcome: dict[str, Any], metric: str, percentile: str) -> float | None:
    """A metric of a test point's benchmark summary (no percentile), or a cell of its percentile table."""
    if not percentile:
        return outcome["metrics"].get(metric)
    row = next((r for r in outcome["percentiles"] if r.get("Percentiles") == percentile), None)
    return None if row is None else row.get(metric)


def _split(spec: str) -> tuple[str, float]:
    name, _, value = spec.rpartition("=")
    try:
        if name.strip():
            return name.strip(), float(value)
    except ValueError:
        pass
    raise InvalidGate(f"a gate is NAME=NUMBER, not {spec!r}")


def _score(dataset: str, result: dict[str, Any]) -> dict[str | None, float | None]:
    return {None: result["scores"].get(dataset)}


def _drop(dataset: str, comparison: dict[str, Any]) -> dict[str | None, Reading]:
    if not comparison["comparable"]:
        return {None: (None, True, "not comparable: " + "; ".join(comparison["reasons"]))}
    row = next((row for row in comparison["scores"] if row["dataset"] == dataset and row["subset"] is None), None)
    if row is None or row["difference"] is None:
        return {None: (None, True, "")}
    interval = (f"{comparison['confidence']:.0%} interval of the change {row['ci_low']:+.4g} to "
                f"{row['ci_high']:+.4g} over {row['paired']} paired samples")
    return {None: (-row["difference"], row["verdict"] == "worse", interval)}


def _change(name: str, sign: int, relative: bool, comparison: dict[str, Any]) -> dict[str | None, Reading]:
    if not comparison["comparable"]:
        return {None: (None, True, "not comparable: " + "; ".join(comparison["reasons"]))}
    metric, _, percentile = name.partition("@")
    cells = [cell for cell in comparison["metrics"]
             if cell["metric"] == metric and cell["percentile"] == (percentile or None)]
    readings: dict[str | None, Reading] = {}
    for cell in cells:
        change = cell["difference_pct"] if relative else cell["difference"]
        note = f"{number(cell['baseline'])} -> {number(cell['candidate'])}"
        if change is None:  # a relative change from 0: none, or past any limit
            change = math.copysign(math.inf, cell["difference"]) if cell["difference"] else 0.0
        readings[cell["point"]] = (sign * change, True, note)
    return readings or {None: (None, True, "")}


def _capacity(result: dict[str, Any]) -> dict[str | None, float | None]:
    return {None: (result.get("search") or {}).get("max_passing")}


def _good_fractions(result: dict[str, Any]) -> dict[str | None, float | None]:
    return {point: (outcome.get("goodput") or {}).get("good_fraction") for point, outcome in result["results"].items()}


def _perf_values(name: str, result: dict[str, Any]) -> dict[str | None, float | None]:
    metric, _, percentile = name.partition("@")
    return {point: perf_value(outcome, metric, percentile) for point, outcome in result["results"].items()}


_PERCENTILE_ROW = re.compile(r"min|max|\d+(\.\d+)?%")


@functools.cache
def _evalscope_metric_names() -> tuple[frozenset[str], frozenset[str]]:
    """The names evalscope gives the metrics of benchmark_summary.json and the columns of its percentile table,
    from its perf_constants module, loaded on its own (importing the evalscope package takes seconds)."""
    spec = importlib.util.find_spec("evalscope")
    path = Path(spec.submodule_search_locations[0]) / "perf" / "utils" / "perf_constants.py"
    module_spec = importlib.util.spec_from_file_location("_evalscope_perf_constants", path)
    constants = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(constants)

    def names(cls: type) -> frozenset[str]:
        return frozenset(value for key, value in vars(cls).items() if key.isupper() and isinstance(value, str))

    return names(constants.Metrics), names(constants.PercentileMetrics) - {constants.PercentileMetrics.PERCENTILES}


def _check_metric_name(name: str) -> None:
    """A gate that names no evalscope metric would only fail after the whole run: refuse it before submitting."""
    summary, columns = _evalscope_metric_names()
    metric, at, percentile = name.partition("@")
    if not at and metric not in summary:
        raise InvalidGate(f"no metric {name!r}; metrics: {', '.join(sorted(summary))}; or a percentile column "
                          f"with @ and the row, e.g. \"TTFT (ms)@99%\"")
    if at and metric not in columns:
        raise InvalidGate(f"no percentile column {metric!r}; columns: {', '.join(sorted(columns))}")
    if at and not _PERCENTILE_ROW.fullmatch(percentile):
        raise InvalidGate(f"no percentile row {percentile!r}; rows are min, max or a percentage such as 99%")
