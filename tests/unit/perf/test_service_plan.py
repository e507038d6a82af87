from serve_app.config import ServiceArgs
from serve_app.perf.datasets import perf_datasets
from serve_app.perf.service import plan_perf, plan_probe
from serve_app.schemas import PerfRequest
from tests.conftest import SAMPLES

PROMPTS = SAMPLES / "perf" / "openqa.jsonl"


def request(**fields):
    return PerfRequest(model="m", url="http://t/v1/chat/completions", dataset_path=str(PROMPTS), **fields)


def test_a_sweep_plans_one_point_per_pair_with_exact_shares(tmp_path):
    # The samples root by its absolute path: the default is relative to the directory pytest starts in.
    args = ServiceArgs(outputs_root=tmp_path, samples_root=SAMPLES, max_parallel_per_shard=8)
    plan = plan_perf(request(number=[40, 100], parallel=[4, 20], warmup=4), args, perf_datasets()["openqa"],
                     cluster_cpus=16)
    assert [p.name for p in plan.points] == ["parallel_4_number_40", "parallel_20_number_100"]
    assert [len(p.shards) for p in plan.points] == [1, 3]
    assert sum(s.number for s in plan.points[1].shards) == 100 and plan.total_requests == 140
    assert plan.dataset_path == str(PROMPTS)


def test_a_repeated_sweep_point_runs_again_under_its_own_key(tmp_path):
    args = ServiceArgs(outputs_root=tmp_path, samples_root=SAMPLES)
    plan = plan_perf(request(number=[100, 100, 50], parallel=[8, 8, 8]), args, perf_datasets()["openqa"],
                     cluster_cpus=2)
    assert [p.name for p in plan.points] == [
        "parallel_8_number_100", "parallel_8_number_100_2", "parallel_8_number_50"]
    assert plan.total_requests == 250


def test_a_search_plans_no_point_ahead_and_each_probe_as_its_load_asks(tmp_path):
    args = ServiceArgs(outputs_root=tmp_path, samples_root=SAMPLES, max_parallel_per_shard=8)
    slo = {"e2e_ms": 500}
    by_parallel = request(number=200, slo=slo, search={"vary": "parallel", "low": 1, "high": 64,
                                                        "probe_duration_s": 5})
    assert plan_perf(by_parallel, args, perf_datasets()["openqa"], cluster_cpus=16).points == []
    probe = plan_probe(by_parallel, args, 16, load=24)
    assert probe.name == "parallel_24_number_200" and probe.duration_s == 5
    assert sum(s.warmup for s in probe.shards) == 24  # a connection per slot before the timed window
    assert sum(s.parallel for s in probe.shards) == 24 and sum(s.number for s in probe.shards) == 200
    assert len(probe.shards) == 3  # 8 concurrent requests a shard at most

    by_rate = request(number=1000, slo=slo, search={"vary": "rate", "low": 1, "high": 100, "probe_duration_s": 4})
    probe = plan_probe(by_rate, args, 16, load=12.5)
    assert probe.name == "rate_12.5_number_50" and probe.rate == 12.5
    assert sum(s.number for s in probe.shards) == 50  # 12.5 req/s for 4 s
    assert sum(s.rate for s in probe.shards) == 12.5


def test_a_duration_bounds_every_point_of_a_sweep(tmp_path):
    args = ServiceArgs(outputs_root=tmp_path, samples_root=SAMPLES)
    plan = plan_perf(request(number=[500, 900], parallel=[2, 4], duration_s=30), args, perf_datasets()["openqa"],
                     cluster_cpus=2)
    assert [point.duration_s for point in plan.points] == [30, 30]


def test_a_rate_sweep_names_its_points_by_rate_and_an_open_loop_caps_nothing_unless_asked(tmp_path):
    args = ServiceArgs(outputs_root=tmp_path, samples_root=SAMPLES, max_rate_per_shard=25.0)
    shaped = dict(rate=[10, 40], number=[50, 200], open_loop=True, arrival="gamma", burstiness=0.5, ramp_up_s=2)
    plan = plan_perf(request(**shaped), args, perf_datasets()["openqa"], cluster_cpus=16)
    assert [p.name for p in plan.points] == ["rate_10_number_50", "rate_40_number_200"]
    assert [p.load for p in plan.points] == [10, 40]
    assert [len(p.shards) for p in plan.points] == [1, 2]  # 25 req/s a shard at most
    assert all(s.parallel is None and s.open_loop for p in plan.points for s in p.shards)
    assert {s.shape.burstiness for s in plan.points[1].shards} == {0.5}
    assert sum(s.rate for s in plan.points[1].shards) == 40
    capped = plan_perf(request(**shaped, parallel=6), args, perf_datasets()["openqa"], cluster_cpus=16)
    assert [sum(s.parallel for s in p.shards) for p in capped.points] == [6, 6]
