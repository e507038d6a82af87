"""Load shapes and saturation through the service: how closely the shards' pooled sends follow the schedule asked
for, and how fast a point past a target's capacity is called saturated and stopped.

Shapes: open-loop points at --rate req/s over --shards shards against the simulator (no latency), each shape in
turn. The schedule is rebuilt here from the same plan (serve_app.perf.plan, the service's seeds), and the sends are
evalscope's request start times in the point's benchmark_data.db. Printed per shape: the achieved rate, the
Kolmogorov-Smirnov distance D between the sent and the scheduled inter-arrival gaps (two samples, with its 5%
critical value), and the lateness of the i-th send against the i-th scheduled arrival (both from the first), p50
and p99. A ramp: sends per second during and after the ramp against the ramp's integral.

Saturation: the simulator serving --capacity requests at once for 100 ms each (capacity x 10 req/s), open-loop
points at half and twice that with stop_on_saturation: what each point's result says, and its wall time.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np
from harness import SAMPLES, local_service

from serve_app.perf.arrivals import LoadShape
from serve_app.perf.plan import plan_shards, point_schedule
from serve_app.simulator.process import SimulatorProcess

PROMPTS = str(SAMPLES / "perf" / "openqa.jsonl")
SEED = 42  # the service's default


def run(client: httpx.Client, url: str, **fields) -> tuple[dict, float]:
    body = {"model": "simulator", "url": url, "dataset": "openqa", "dataset_path": PROMPTS, "max_tokens": 4,
            "open_loop": True, **fields}
    started = time.perf_counter()
    response = client.post("/api/v1/perf", json=body)
    wall_s = time.perf_counter() - started
    response.raise_for_status()
    return response.json(), wall_s


def send_times(result: dict) -> np.ndarray:
    (point,) = result["results"]
    (database,) = Path(result["output_dir"]).rglob(f"{point}/benchmark_data.db")
    with sqlite3.connect(database) as connection:
        return np.sort([row[0] for row in connection.execute("SELECT start_time FROM result")])


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.sort(np.concatenate([a, b]))
    return float(np.max(np.abs(np.searchsorted(np.sort(a), grid, "right") / len(a)
                               - np.searchsorted(np.sort(b), grid, "right") / len(b))))


def shapes_part(client: httpx.Client, url: str, rate: float, number: int, shards: int) -> None:
    print(f"\n## Shapes: {number} requests at {rate:g} req/s, open loop, {shards} shards")
    print(f"{'shape':>22}  {'achieved req/s':>14}  {'D gaps':>7}  {'5% crit':>7}  {'late p50 ms':>11}  "
          f"{'late p99 ms':>11}")
    shapes = {"poisson": LoadShape(), "constant": LoadShape("constant"),
              "gamma burstiness 0.25": LoadShape("gamma", 0.25), "gamma burstiness 4": LoadShape("gamma", 4.0)}
    for name, shape in shapes.items():
        result, _ = run(client, url, rate=rate, number=number, shards=shards, arrival=shape.arrival,
                        **({"burstiness": shape.burstiness} if shape.arrival == "gamma" else {}))
        sent = send_times(result)
        schedule = point_schedule(plan_shards(parallel=None, number=number, rate=rate, shards=shards, seed=SEED,
                                              shape=shape))
        late_ms = 1000 * ((sent - sent[0]) - (schedule[:len(sent)] - schedule[0]))
        sent_gaps, scheduled_gaps = np.diff(sent), np.diff(schedule)
        critical = 1.36 * np.sqrt((len(sent_gaps) + len(scheduled_gaps)) / (len(sent_gaps) * len(scheduled_gaps)))
        # Evenly spaced gaps are all one value: any jitter is a distance of ~0.5, so only the lateness says much.
        distance = "n/a" if shape.arrival == "constant" else f"{ks_two_sample(sent_gaps, scheduled_gaps):.4f}"
        print(f"{name:>22}  {(len(sent) - 1) / (sent[-1] - sent[0]):>14.2f}  {distance:>7}  {critical:>7.4f}  "
              f"{np.percentile(late_ms, 50):>11.2f}  {np.percentile(late_ms, 99):>11.2f}")


def ramp_part(client: httpx.Client, url: str, rate: float, ramp_s: float, shards: int) -> None:
    number = int(rate * (ramp_s / 2 + ramp_s))  # the ramp, then as long again at the full rate
    result, _ = run(client, url, rate=rate, number=number, shards=shards, ramp_up_s=ramp_s)
    sent = send_times(result)
    seconds = np.arange(int(2 * ramp_s))
    counts = np.histogram(sent - sent[0], bins=np.arange(int(2 * ramp_s) + 1))[0]
    expected = np.where(seconds < ramp_s, rate * (2 * seconds + 1) / (2 * ramp_s), rate)
    print(f"\n## Ramp: Poisson at {rate:g} req/s after a {ramp_s:g} s ramp, {shards} shards, {number} requests")
    print("second:   " + " ".join(f"{s:>5}" for s in seconds))
    print("sent:     " + " ".join(f"{c:>5}" for c in counts))
    print("expected: " + " ".join(f"{e:>5.0f}" for e in expected))
    print(f"largest |sent - expected| / sqrt(expected): {np.max(np.abs(counts - expected) / np.sqrt(expected)):.2f}")


def saturation_part(client: httpx.Client, capacity: int, seconds: float) -> None:
    served = capacity * 10  # 100 ms a request
    print(f"\n## Saturation: a target serving {capacity} at once, 100 ms each ({served} req/s), stop_on_saturation")
    with SimulatorProcess(max_concurrency=capacity, ttft_ms=100, output_tokens=1) as target:
        for rate in (served / 2, served * 2):
            number = int(rate * seconds)
            result, wall_s = run(client, target.chat_url, rate=rate, number=number, shards=1, max_tokens=1,
                                 stop_on_saturation=True)
            (outcome,) = result["results"].values()
            saturation = outcome["saturation"]
            print(f"rate {rate:g} req/s, {number} requests planned ({seconds:g} s): saturated "
                  f"{saturation['saturated']}, sent at {saturation['achieved_req_per_s']:.1f} of "
                  f"{saturation['requested_req_per_s']:.1f} req/s, in flight {saturation['in_flight_start']:.1f} -> "
                  f"{saturation['in_flight_end']:.1f}, stopped early {saturation['stopped_early']}, "
                  f"not sent {saturation['not_sent']}, the job took {wall_s:.1f} s")
            for reason in saturation["reasons"]:
                print(f"    {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--number", type=int, default=1500)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--ramp-s", type=float, default=6.0)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--saturation-s", type=float, default=10.0)
    options = parser.parse_args()
    base, _, cores = local_service("load_shapes")
    print(f"{cores} cores")
    with SimulatorProcess() as target, httpx.Client(base_url=base, timeout=1800) as client:
        shapes_part(client, target.chat_url, options.rate, options.number, options.shards)
        ramp_part(client, target.chat_url, options.rate, options.ramp_s, options.shards)
        saturation_part(client, options.capacity, options.saturation_s)


if __name__ == "__main__":
    main()
