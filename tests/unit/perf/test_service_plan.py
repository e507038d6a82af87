from serve_app.config import ServiceArgs
from serve_app.perf.datasets import perf_datasets
from serve_app.perf.service import plan_perf
from serve_app.schemas import PerfRequest
from tests.conftest import SAMPLES

PROMPTS = SAMPLES / "perf" / "openqa.jsonl"


def request(**fields):
    return PerfRequest(model="m", url="http://t/v1/chat/completions", dataset_path=str(PROMPTS), **fields)


def test_a_sweep_plans_one_point_per_pair_with_exact_shares(tmp_path):
    # The samples root by its absolute path: the default is relative to the directory pytest starts in.
    args = ServiceArgs(outputs_root=tmp_path, samples_root=SAMPLES, max_parallel_per_shard=8)
    plan = plan_perf(request(number=[40, 100], parallel=[4, 20], warmup=4), args, perf_datasets()["openqa"],
                     workers_available=16)
    assert [p.name for p in plan.points] == ["parallel_4_number_40", "parallel_20_number_100"]
    assert [len(p.shards) for p in plan.points] == [1, 3]
    assert sum(s.number for s in plan.points[1].shards) == 100 and plan.total_requests == 140
    assert plan.dataset_path == str(PROMPTS)


def test_a_repeated_sweep_point_runs_again_under_its_own_key(tmp_path):
    args = ServiceArgs(outputs_root=tmp_path, samples_root=SAMPLES)
    plan = plan_perf(request(number=[100, 100, 50], parallel=[8, 8, 8]), args, perf_datasets()["openqa"],
                     workers_available=2)
    assert [p.name for p in plan.points] == [
        "parallel_8_number_100", "parallel_8_number_100_2", "parallel_8_number_50"]
    assert plan.total_requests == 250
