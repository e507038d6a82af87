import pytest

from serve_app.errors import RequestError
from serve_app.perf.plan import (
    UNLIMITED_RATE,
    choose_shard_count,
    plan_shards,
    split_evenly,
    unplaceable_message,
)

LIMITS = dict(max_parallel_per_shard=100, max_rate_per_shard=200.0, max_shards=16, shard_cpus=0.5)


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
    count = choose_shard_count(parallel=1000, number=5000, rate=-1, requested=None, cluster_cpus=64, **LIMITS)
    assert count == 10


def test_auto_shard_count_follows_the_rate_limit():
    count = choose_shard_count(parallel=10, number=5000, rate=1000, requested=None, cluster_cpus=64, **LIMITS)
    assert count == 5


def test_auto_shard_count_is_capped_by_the_shards_the_cluster_holds_not_its_cpu_count():
    # 2 CPUs hold 4 shards of 0.5 CPU (the integer CPU count, 2, was the cap before).
    count = choose_shard_count(parallel=1000, number=5000, rate=-1, requested=None, cluster_cpus=2, **LIMITS)
    assert count == 4
    fractional = choose_shard_count(parallel=1000, number=5000, rate=-1, requested=None, cluster_cpus=0.3,
                                    **{**LIMITS, "shard_cpus": 0.1})
    assert fractional == 3  # 0.3 / 0.1 is 2.9999999999999996 in floats


def test_auto_shard_count_is_one_shard_even_on_a_cluster_without_cpus_yet():
    # An autoscaling cluster at zero workers: the point waits for a node (placement_timeout_s), it is not refused.
    assert choose_shard_count(parallel=1000, number=5000, rate=-1, requested=None, cluster_cpus=0, **LIMITS) == 1


def test_explicit_shards_need_one_request_and_one_slot_each():
    with pytest.raises(RequestError, match="parallel=2"):
        choose_shard_count(parallel=2, number=100, rate=-1, requested=3, cluster_cpus=8, **LIMITS)
    assert choose_shard_count(parallel=4, number=100, rate=-1, requested=3, cluster_cpus=1.5, **LIMITS) == 3


def test_explicit_shards_the_cluster_could_never_hold_are_refused_naming_the_cpus_needed_and_the_maximum():
    with pytest.raises(RequestError) as refused:
        choose_shard_count(parallel=10, number=100, rate=-1, requested=5, cluster_cpus=2, **LIMITS)
    assert str(refused.value) == (
        "shards=5 needs 2.5 CPUs (5 shards x perf_shard_num_cpus=0.5), more than the cluster's 2 CPUs at most "
        "(max_cluster_cpus, else the CPUs the cluster has now)"
    )
    assert choose_shard_count(parallel=10, number=100, rate=-1, requested=4, cluster_cpus=2, **LIMITS) == 4


def test_a_point_that_found_no_room_says_the_cpus_it_needed_and_the_cpus_free():
    assert unplaceable_message(shards=6, shard_cpus=0.5, free_cpus=1.15, total_cpus=2, waited_s=3) == (
        "the cluster could not place this test point's shards within placement_timeout_s=3 s: they need 3 CPUs "
        "(6 shards x perf_shard_num_cpus=0.5) at once, and 1.15 of the cluster's 2 CPUs are free (other jobs or "
        "workers hold the rest)"
    )
