"""Warm workers: started ahead of need, each handed out to one job only, replaced, never started while a perf test
measures, and stopped when the pool closes."""

import itertools

from serve_app.warm_pool import WarmPool


class Processes:
    """Stand-ins for worker processes: numbered as started, and the ones stopped."""

    def __init__(self) -> None:
        self.numbers = itertools.count(1)
        self.started: list[int] = []
        self.stopped: list[int] = []
        self.idle_at_starts: list[list[int]] = []

    def start(self, idle) -> int:
        self.idle_at_starts.append(list(idle))
        self.started.append(next(self.numbers))
        return self.started[-1]

    def stop(self, process: int) -> None:
        self.stopped.append(process)

    def pool(self, size: int) -> WarmPool[int]:
        return WarmPool(self.start, self.stop, size)


def test_workers_are_started_before_any_job_asks_and_handed_out_oldest_first():
    processes = Processes()
    pool = processes.pool(2)
    assert processes.started == [1, 2] and pool.idle == 2
    assert pool.take() == 1
    assert pool.take() == 2


def test_a_worker_is_never_handed_out_twice():
    pool = Processes().pool(2)
    taken = [pool.take() for _ in range(10)]
    assert len(set(taken)) == 10


def test_a_taken_worker_is_replaced_at_once():
    processes = Processes()
    pool = processes.pool(2)
    pool.take()
    assert processes.started == [1, 2, 3] and pool.idle == 2


def test_size_zero_starts_nothing_until_a_job_asks_and_then_exactly_what_it_takes():
    processes = Processes()
    pool = processes.pool(0)
    assert processes.started == [] and pool.idle == 0
    assert [pool.take(), pool.take()] == [1, 2]
    assert processes.started == [1, 2] and pool.idle == 0


def test_when_more_are_taken_than_were_started_the_rest_start_fresh_and_the_pool_refills():
    processes = Processes()
    pool = processes.pool(1)
    # Three shards of one job: the warm worker, then two started as the job asks (the refills).
    assert [pool.take() for _ in range(3)] == [1, 2, 3]
    assert pool.idle == 1 and processes.stopped == []


def test_no_worker_starts_while_refills_are_held_and_the_pool_refills_when_the_last_hold_ends():
    processes = Processes()
    pool = processes.pool(2)
    with pool.refills_held():
        with pool.refills_held():  # two perf tests measuring at once
            assert [pool.take(), pool.take(), pool.take()] == [1, 2, 3]  # the third could not wait: started anyway
        assert processes.started == [1, 2, 3] and pool.idle == 0
    assert processes.started == [1, 2, 3, 4, 5] and pool.idle == 2


def test_closing_stops_the_idle_workers_only_and_later_takes_start_fresh_without_refilling():
    processes = Processes()
    pool = processes.pool(2)
    in_use = pool.take()
    pool.close()
    assert processes.stopped == [2, 3] and in_use not in processes.stopped
    assert pool.take() == 4
    assert processes.started == [1, 2, 3, 4] and pool.idle == 0


def test_a_fitting_worker_is_taken_oldest_first_and_none_fits_leaves_the_start_to_the_caller():
    # Perf shards: a warm one on the node where the shard's CPUs were placed (here: odd-numbered processes).
    processes = Processes()
    pool = processes.pool(3)
    assert pool.take_fitting(lambda process: process % 2 == 1) == 1
    assert pool.take_fitting(lambda process: process % 2 == 1) == 3
    assert pool.take_fitting(lambda process: process > 100) is None
    assert processes.started == [1, 2, 3, 4, 5] and pool.idle == 3  # refilled after each take, never more


def test_dropping_stops_the_lost_idle_workers_and_starts_others_in_their_place():
    # A node left the cluster: its warm workers are gone, and the pool would otherwise hand them out dead.
    processes = Processes()
    pool = processes.pool(3)
    pool.drop(lambda process: process in (1, 3))
    assert processes.stopped == [1, 3] and pool.idle == 3
    assert [pool.take() for _ in range(3)] == [2, 4, 5]


def test_each_start_is_told_the_idle_workers_so_it_can_go_where_they_are_fewest():
    processes = Processes()
    pool = processes.pool(2)
    pool.take()
    assert processes.idle_at_starts == [[], [1], [2]]
