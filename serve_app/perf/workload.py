"""evalscope's workload throughput of a test point (its workload_throughput.json and workload_timeline.json) over the
union of the shards' records, from numpy columns.

evalscope's collector feeds every successful request, as it completes, into a WorkloadTimeline that keeps one
cumulative-token point per request and reports token throughput over three windows: the whole run, its last 30 s
and its steady state (the first 20 % of its wall time left out). That timeline is a Python object per request;
here the same points are numpy columns (32 bytes a request, built from the record files a column at a time) and
the windows are evalscope's own rules on them, checked against its WorkloadTimeline in
tests/unit/perf/test_workload.py. The union's points are in completion order, as one process's collector would
have received them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow.compute as pc
from evalscope.perf.utils.workload_timeline import WorkloadThroughput, WorkloadThroughputRow

from serve_app.perf.records import read_batches

# WorkloadTimeline.to_summary's defaults, which evalscope's summary_result uses.
LAST_WINDOW_S = 30.0
WARMUP_FRACTION = 0.2
_METRICS = ["Total Prompt tok/s", "New Prompt tok/s", "Cached Prompt tok/s", "Completion tok/s"]
# Points per write of workload_timeline.json: bounds the Python objects held at once (~4 MB).
_WRITE_POINTS = 8192


@dataclass(frozen=True)
class Timeline:
    """WorkloadTimeline's points: per request fed, in completion order, its completion time from `wall_start` (the
    first completed request's start) and the cumulative completion, new-prompt and cached-prompt tokens."""

    wall_start: float
    t: np.ndarray
    cum_completion: np.ndarray
    cum_new_prompt: np.ndarray
    cum_cached_prompt: np.ndarray

    @property
    def wall_time(self) -> float:
        return max(self.t[-1].item(), 0.0)

    def summary(self) -> WorkloadThroughput:
        """WorkloadTimeline.to_summary."""
        overall = self._rates_from(None)
        wall = self.wall_time
        last = overall if wall <= LAST_WINDOW_S else self._rates_from(self._anchor(wall - LAST_WINDOW_S))
        steady_anchor = self._anchor(wall * WARMUP_FRACTION)
        # With no width left after the warm-up, evalscope reports the overall rates.
        steady = overall if wall <= 0 or steady_anchor == len(self.t) - 1 else self._rates_from(steady_anchor)
        return WorkloadThroughput(
            n_samples=len(self.t), wall_time_s=round(wall, 4), last_window_s=LAST_WINDOW_S,
            warmup_frac=WARMUP_FRACTION,
            rows=[WorkloadThroughputRow(metric=metric, overall=overall[i], last_window=last[i], steady_state=steady[i])
                  for i, metric in enumerate(_METRICS)],
        )

    def _anchor(self, t_target: float) -> int:
        """The latest point at or before `t_target`, or the first when that is at or after it (evalscope's forward
        scan over points sorted by time)."""
        if t_target <= self.t[0]:
            return 0
        return int(np.searchsorted(self.t, t_target, side="right")) - 1

    def _rates_from(self, anchor: int | None) -> list[float]:
        """Total prompt, new prompt, cached prompt and completion tok/s from `anchor` (None: evalscope's origin, t 0
        and nothing counted) to the last point, in Python numbers as evalscope computes them."""
        def at(index: int | None) -> tuple[float, int, int, int]:
            if index is None:
                return 0.0, 0, 0, 0
            return (self.t[index].item(), self.cum_new_prompt[index].item(), self.cum_cached_prompt[index].item(),
                    self.cum_completion[index].item())

        last_t, last_new, last_cached, last_completion = at(len(self.t) - 1)
        anchor_t, anchor_new, anchor_cached, anchor_completion = at(anchor)
        dt = last_t - anchor_t
        if dt <= 0:
            return [0.0, 0.0, 0.0, 0.0]
        new, cached = last_new - anchor_new, last_cached - anchor_cached
        return [(new + cached) / dt, new / dt, cached / dt, (last_completion - anchor_completion) / dt]

    def write_points(self, path: Path) -> None:
        """workload_timeline.json (WorkloadTimeline.to_raw_points_dict), written a slice of points at a time."""
        with open(path, "wb") as file:
            file.write(b'{"wall_start": ' + orjson.dumps(self.wall_start) + b', "points": [')
            for start in range(0, len(self.t), _WRITE_POINTS):
                part = slice(start, start + _WRITE_POINTS)
                points = [{"t": t, "cum_completion": completion, "cum_new_prompt": new, "cum_cached_prompt": cached}
                          for t, completion, new, cached in zip(_rounded_6(self.t[part]).tolist(),
                                                                self.cum_completion[part].tolist(),
                                                                self.cum_new_prompt[part].tolist(),
                                                                self.cum_cached_prompt[part].tolist())]
                file.write((b", " if start else b"") + orjson.dumps(points)[1:-1])
            file.write(b"]}")


def _rounded_6(values: np.ndarray) -> np.ndarray:
    """Python's round(value, 6) of each value (to_raw_points_dict's), at numpy's speed: scaling by 1e6 is off by at
    most half a unit in its last place, so its rounding to an integer is the exact value's unless it lies that close
    to a half; those few take Python's own round."""
    scaled = values * 1e6
    rounded = np.rint(scaled) / 1e6
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) <= 4 * np.spacing(scaled)
    rounded[near_half] = [round(value, 6) for value in values[near_half].tolist()]
    return rounded


def workload_timeline(paths: list[Path], rows: int) -> Timeline | None:
    """The points evalscope's WorkloadTimeline.feed keeps for the successful requests in `paths` (`rows` requests
    in all, as the merge's accumulator counted them); None when there are none (evalscope then writes neither
    file). The columns are filled a file's batch at a time and put in the points' order one by one, so that at 1M
    requests this holds ~60 MB, less than the merge's largest percentile column."""
    columns = {name: np.empty(rows, dtype) for name, dtype in _COLUMNS.items()}
    filled = 0
    for batch in read_batches(paths, list(_COLUMNS)):
        for name, values in columns.items():
            values[filled:filled + batch.num_rows] = pc.fill_null(batch.column(name), values.dtype.type(0))
        filled += batch.num_rows
    if filled != rows:
        raise RuntimeError(f"the record files hold {filled} requests where the merge counted {rows}")
    completed, start = columns.pop("completed_time"), columns.pop("start_time")
    # feed() skips failures and requests whose times were never set; the rest go in completion order.
    fed = columns.pop("success") & (completed > 0) & (completed >= start)
    order = np.argsort(np.where(fed, completed, np.inf), kind="stable")[:np.count_nonzero(fed)]
    if not len(order):
        return None
    wall_start = start[order[0]].item()
    t = completed[order]
    t -= wall_start
    del completed, start, fed

    def in_order(name: str) -> np.ndarray:
        return columns.pop(name)[order]

    cached = in_order("cached_tokens")
    new_prompt = in_order("prompt_tokens")
    new_prompt -= cached
    np.maximum(new_prompt, 0, out=new_prompt)  # some servers count more cached tokens than the prompt had
    return Timeline(wall_start=wall_start, t=t, cum_completion=np.cumsum(in_order("completion_tokens")),
                    cum_new_prompt=np.cumsum(new_prompt, out=new_prompt),
                    cum_cached_prompt=np.cumsum(cached, out=cached))


# What feed() reads of a request.
_COLUMNS = {"success": np.bool_, "start_time": np.float64, "completed_time": np.float64, "prompt_tokens": np.int64,
            "completion_tokens": np.int64, "cached_tokens": np.int64}
