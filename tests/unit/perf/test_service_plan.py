from pathlib import Path

import pytest

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.perf.service import plan_perf
from serve_app.schemas import PerfRequest

PROMPTS = Path(__file__).resolve().parents[3] / "examples" / "datasets" / "perf" / "openqa.jsonl"


def request(**fields):
    return PerfRequest(model="m", url="http://t/v1/chat/completions", dataset_path=str(PROMPTS), **fields)


def test_a_sweep_plans_one_point_per_pair_with_exact_shares(tmp_path):
    args = ServiceArgs(outputs_root=tmp_path, max_parallel_per_shard=8)
    plan = plan_perf(request(number=[40, 100], parallel=[4, 20], warmup=4), args, workers_available=16)
    assert [p.name for p in plan.points] == ["parallel_4_number_40", "parallel_20_number_100"]
    assert [len(p.shards) for p in plan.points] == [1, 3]
    assert sum(s.number for s in plan.points[1].shards) == 100 and plan.total_requests == 140
    assert plan.dataset_path == str(PROMPTS)


@pytest.mark.parametrize(
    "fields,message",
    [({"number": 2_000_001}, "number=2000001 is over this service's limit of 1000000 (max_number)"),
     ({"parallel": [1, 500]}, "parallel=500 is over this service's limit of 100 (max_parallel)"),
     ({"rate": 10_000}, "rate=10000.0 is over this service's limit of 5000.0 (max_rate)")],
)
def test_service_limits_are_a_clear_refusal(tmp_path, fields, message):
    args = ServiceArgs(outputs_root=tmp_path, max_parallel=100, max_rate=5000)
    if isinstance(fields.get("parallel"), list):
        fields["number"] = [10, 10]
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_perf(request(**fields), args, workers_available=2)
