import pytest

from serve_app.errors import RequestError
from serve_app.perf.plan import UNLIMITED_RATE, choose_shard_count, plan_shards, split_evenly

LIMITS = dict(max_parallel_per_shard=100, max_rate_per_shard=200.0, max_shards=16)


@pytest.mark.parametrize("total,parts", [(1, 1), (7, 3), (1000, 7), (256, 2), (5, 5)])
def test_split_evenly_sums_exactly_and_differs_by_at_most_one(total, parts):
    shares = split_evenly(total, parts)
    assert sum(shares) == total
    assert len(shares) == parts
    assert max(shares) - min(shares) <= 1


def test_shards_sum_to_the_requested_load():
    shards = plan_shards(parallel=257, number=1001, rate=500.0, shards=4, warmup=257)
    assert sum(s.parallel for s in shards) == 257
    assert sum(s.warmup for s in shards) == 257
    assert sum(s.number for s in shards) == 1001
    assert sum(s.rate for s in shards) == pytest.approx(500.0)
    assert len({s.seed for s in shards}) == 4  # independent Poisson streams, not four copies of one


def test_unlimited_rate_stays_unlimited_on_every_shard():
    assert all(s.rate == UNLIMITED_RATE for s in plan_shards(parallel=8, number=80, rate=-1, shards=2))


def test_auto_shard_count_keeps_each_shard_under_the_per_shard_concurrency():
    count = choose_shard_count(parallel=1000, number=5000, rate=-1, requested=None, workers_available=64, **LIMITS)
    assert count == 10


def test_auto_shard_count_follows_the_rate_limit():
    count = choose_shard_count(parallel=10, number=5000, rate=1000, requested=None, workers_available=64, **LIMITS)
    assert count == 5


def test_auto_shard_count_is_capped_by_the_workers_available():
    count = choose_shard_count(parallel=1000, number=5000, rate=-1, requested=None, workers_available=2, **LIMITS)
    assert count == 2


def test_explicit_shards_need_one_request_and_one_slot_each():
    with pytest.raises(RequestError, match="parallel=2"):
        choose_shard_count(parallel=2, number=100, rate=-1, requested=3, workers_available=8, **LIMITS)
    assert choose_shard_count(parallel=4, number=100, rate=-1, requested=3, workers_available=1, **LIMITS) == 3
