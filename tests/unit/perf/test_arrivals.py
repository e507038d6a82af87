"""Every load shape split over shards sums to the shape asked for: the union of the shards' schedules against the
point's, by a Kolmogorov-Smirnov statistic on the gaps, by counts per second of a ramp, or exactly."""

import numpy as np
import pytest

from serve_app.perf.arrivals import LoadShape, ramp_warp
from serve_app.perf.plan import plan_shards, point_schedule

RATE = 200.0


def union(shape: LoadShape, number: int, shards: int, warmup: int = 0, rate: float = RATE) -> np.ndarray:
    return point_schedule(plan_shards(parallel=None, number=number, rate=rate, shards=shards, warmup=warmup, seed=42,
                                      shape=shape))


def ks_statistic(sample: np.ndarray, cdf) -> float:
    """Largest distance between the sample's empirical distribution and `cdf`."""
    x = np.sort(sample)
    n = len(x)
    expected = cdf(x)
    return float(max(np.max(np.arange(1, n + 1) / n - expected), np.max(expected - np.arange(n) / n)))


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.sort(np.concatenate([a, b]))
    ecdf = lambda s: np.searchsorted(np.sort(s), grid, "right") / len(s)  # noqa: E731
    return float(np.max(np.abs(ecdf(a) - ecdf(b))))


def critical(n: int, m: int | None = None) -> float:
    """The KS statistic's 0.1 % critical value: a correct schedule exceeds it once in a thousand seeds."""
    effective = n if m is None else n * m / (n + m)
    return 1.95 / np.sqrt(effective)


def test_constant_arrivals_of_every_shard_interleave_into_one_evenly_spaced_stream():
    plans = plan_shards(parallel=None, number=1001, rate=RATE, shards=4, warmup=7, seed=1,
                        shape=LoadShape("constant"))
    everything = np.sort(np.concatenate([plan.arrival_offsets() for plan in plans]))
    assert np.allclose(everything, np.arange(1, 1009) / RATE)  # warm-up and measured: one stream, every 1/rate s
    assert np.allclose(point_schedule(plans), np.arange(8, 1009) / RATE)  # the measured ones come after the warm-up
    assert [len(plan.arrival_offsets()) for plan in plans] == [plan.warmup + plan.number for plan in plans]


@pytest.mark.parametrize("shards", [1, 4])
def test_poisson_shards_sum_to_a_poisson_stream_at_the_full_rate(shards):
    arrivals = union(LoadShape("poisson"), 4000, shards)
    gaps = np.diff(arrivals)
    assert ks_statistic(gaps, lambda x: 1 - np.exp(-RATE * x)) < critical(len(gaps))
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) == pytest.approx(RATE, rel=0.02)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_arrivals_have_the_burstiness_asked_and_shards_sum_to_the_rate(burstiness):
    (plan,) = plan_shards(parallel=None, number=4000, rate=RATE, shards=1, seed=3,
                          shape=LoadShape("gamma", burstiness))
    gaps = np.diff(plan.arrival_offsets())
    reference = np.random.default_rng(99).gamma(burstiness, 1 / (RATE * burstiness), 4000)
    assert ks_two_sample(gaps, reference) < critical(len(gaps), len(reference))
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1 / np.sqrt(burstiness), rel=0.1)  # 1 would be Poisson
    split = union(LoadShape("gamma", burstiness), 4000, 4)
    assert (len(split) - 1) / (split[-1] - split[0]) == pytest.approx(RATE, rel=0.02)


@pytest.mark.parametrize(("arrival", "tolerance"), [("constant", 1), ("poisson", None)])
def test_a_ramp_raises_the_rate_linearly_on_every_shard_then_holds_it(arrival, tolerance):
    ramp_s, rate = 10.0, 100.0
    arrivals = union(LoadShape(arrival, ramp_up_s=ramp_s), 3000, 3, rate=rate)
    counts = np.histogram(arrivals, bins=np.arange(0, 20))[0]
    seconds = np.arange(0, 19)
    expected = np.where(seconds < ramp_s, rate * (2 * seconds + 1) / (2 * ramp_s), rate)  # the ramp's integral
    # Constant: within one arrival per second; Poisson: within 4 standard deviations of each second's count.
    allowed = tolerance if tolerance is not None else 4 * np.sqrt(expected) + 1
    assert np.all(np.abs(counts - expected) <= allowed), (counts, expected)


def test_the_ramp_warp_meets_the_full_rate_where_the_ramp_ends():
    assert ramp_warp(np.array([0.0, 2.5, 5.0, 6.0]), 10.0).tolist() == pytest.approx([0.0, np.sqrt(50), 10.0, 11.0])


def test_each_shard_draws_its_own_stream_the_same_one_for_the_same_seed():
    def first_shard(seed):
        return plan_shards(parallel=None, number=100, rate=RATE, shards=2, seed=seed)[0].arrival_offsets()

    plans = plan_shards(parallel=None, number=100, rate=RATE, shards=2, seed=5)
    assert np.array_equal(first_shard(5), plans[0].arrival_offsets())
    assert not np.array_equal(first_shard(6), plans[0].arrival_offsets())
    assert not np.array_equal(plans[0].arrival_offsets(), plans[1].arrival_offsets())


def test_without_a_rate_there_is_no_schedule():
    assert point_schedule(plan_shards(parallel=4, number=100, rate=-1, shards=2)) is None
