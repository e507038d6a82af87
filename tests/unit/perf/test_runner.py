import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from evalscope.perf.benchmark import get_requests
from evalscope.perf.utils.body_meta import BODY_META_REQUEST_ID

from serve_app.perf import runner as runner_module
from serve_app.perf.arrivals import LoadShape
from serve_app.perf.plan import plan_shards
from serve_app.perf.records import read_batches
from serve_app.perf.runner import ShardRunner, _http_client
from serve_app.perf.shard import ShardSpec

PROMPTS = Path(__file__).resolve().parents[3] / "examples" / "datasets" / "perf" / "openqa.jsonl"


def spec(**fields):
    (plan,) = plan_shards(parallel=2, number=5, rate=-1, shards=1, warmup=2)
    values = dict(plan=plan, model="m", url="http://127.0.0.1:9/v1/chat/completions", api="openai", api_key="sk-x",
                  dataset="openqa", dataset_path=str(PROMPTS), max_tokens=8, temperature=0.0, stream=True,
                  debug=False, connect_timeout_s=2, request_timeout_s=30, work_dir="/tmp/unused")
    return ShardSpec(**{**values, **fields})


def test_shard_arguments_carry_its_share_and_the_target():
    runner = ShardRunner(spec())
    args = runner.args
    assert (args.parallel, args.number, args.warmup_num, args.max_tokens) == (2, 5, 2, 8)
    assert args.total_timeout == 30  # a target that stops answering fails requests instead of hanging the test
    assert type(runner.api_plugin).__name__ == "ResilientLeanOpenaiPlugin"
    assert type(ShardRunner(spec(lean_client=False)).api_plugin).__name__ == "ResilientOpenaiPlugin"


def test_requests_are_built_before_the_timed_window(monkeypatch):
    runner = ShardRunner(spec())
    runner.requests = asyncio.run(runner._collect_requests())
    assert len(runner.requests) == 7  # number + warmup
    assert sum(is_warmup for _, is_warmup in runner.requests) == 2


def test_unreachable_target_fails_the_probe_naming_the_shard():
    runner = ShardRunner(spec())
    with pytest.raises(RuntimeError, match=r"^probe request to http://127.0.0.1:9/v1/chat/completions failed: "):
        runner.prepare()


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy"])
def test_proxy_settings_in_the_environment_are_honoured(monkeypatch, variable):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.netrc

    async def trust_env(with_proxy: bool) -> bool:
        if with_proxy:
            monkeypatch.setenv(variable, "http://proxy.invalid:3128")
        async with _http_client(ShardRunner(spec()).args, None) as client:
            return client.client.trust_env

    assert asyncio.run(trust_env(False)) is False  # nothing to look up: skip aiohttp's per-request thread hop
    assert asyncio.run(trust_env(True)) is True


@pytest.mark.parametrize("shape", [LoadShape(), LoadShape("constant"), LoadShape("gamma", 0.5),
                                   LoadShape("poisson", ramp_up_s=0.2)], ids=["poisson", "constant", "gamma", "ramp"])
def test_a_shard_sends_each_request_at_its_scheduled_offset_warm_up_first(tmp_path, shape):
    (plan,) = plan_shards(parallel=2, number=30, rate=100.0, shards=1, warmup=3, seed=7, shape=shape)
    runner = ShardRunner(spec(plan=plan, work_dir=str(tmp_path)))  # unreachable: each request fails at once
    runner.requests = asyncio.run(runner._collect_requests())  # prepare() without the probe
    runner.schedule = plan.arrival_offsets()
    start_at = time.time() + 0.2
    stats = runner.run(start_at=start_at)
    sent = sorted(start - start_at for batch in read_batches([Path(stats.records_path)], ["start_time"])
                  for start in batch.column("start_time").to_pylist())
    scheduled = plan.arrival_offsets()[3:]  # the warm-up requests go out first and are not recorded
    assert (stats.requests, stats.sent) == (30, 30)
    assert np.max(np.abs(np.array(sent) - scheduled)) < 0.05  # on schedule, to the event loop's jitter


def test_equal_request_bodies_are_held_once_and_still_sent_as_built():
    (plan,) = plan_shards(parallel=2, number=300, rate=-1, shards=1)
    runner = ShardRunner(spec(plan=plan))
    runner.requests = asyncio.run(runner._collect_requests())
    built = asyncio.run(_evalscope_requests(runner))
    assert list(runner.requests) == built  # the same bodies, in the same order
    distinct_prompts = len({json.dumps(body, sort_keys=True) for body, _ in built})
    assert 1 < distinct_prompts < 300  # the dataset's prompts repeat
    assert len({id(body) for body, _ in runner.requests}) == distinct_prompts  # held once each


def test_bodies_with_per_request_metadata_are_never_shared(monkeypatch):
    runner = ShardRunner(spec())

    async def trace_replay(args, api_plugin):  # the same body twice, each with its own request id
        for _ in range(2):
            yield {"messages": [{"role": "user", "content": "hi"}], BODY_META_REQUEST_ID: "r1"}, False

    monkeypatch.setattr(runner_module, "get_requests", trace_replay)
    (first, _), (second, _) = asyncio.run(runner._collect_requests())
    assert first == second and first is not second  # the client pops the id from each as it sends


async def _evalscope_requests(runner):
    return [item async for item in get_requests(runner.args, runner.api_plugin)]


def test_random_conversations_are_drawn_per_shard_within_the_turn_bounds(smollm_tokenizer):
    plans = plan_shards(parallel=2, number=6, rate=-1, shards=2, seed=11)

    def conversations(plan):
        runner = ShardRunner(spec(plan=plan, dataset="random_multi_turn", dataset_path=None, evalscope_args={
            "multi_turn": True, "min_turns": 2, "max_turns": 3, "tokenizer_path": str(smollm_tokenizer),
            "min_prompt_length": 8, "max_prompt_length": 16}))
        return [[turn.messages[0]["content"] for turn in conversation]
                for conversation in runner._load_conversations()][:plan.number]

    first, second = (conversations(plan) for plan in plans)
    assert len(first) == len(second) == 3
    assert all(2 <= len(turns) <= 3 for turns in first + second)
    assert not {text for turns in first for text in turns} & {text for turns in second for text in turns}
    assert conversations(plans[0]) == first  # the shard's seed makes its conversations reproducible


def test_a_conversation_file_is_dealt_to_the_shards_from_their_own_offsets():
    conversations_file = PROMPTS.with_name("conversations.jsonl")
    plans = plan_shards(parallel=2, number=8, rate=-1, shards=2)
    firsts = []
    for plan in plans:
        runner = ShardRunner(spec(plan=plan, dataset="custom_multi_turn", dataset_path=str(conversations_file),
                                  evalscope_args={"multi_turn": True}))
        firsts.append([conversation[0].messages[0]["content"] for conversation in runner._load_conversations()])
    lines = [json.loads(line)[0]["content"] for line in conversations_file.read_text().splitlines()]
    assert firsts[0][:4] == lines[:4] and firsts[1][:4] == lines[4:8]
