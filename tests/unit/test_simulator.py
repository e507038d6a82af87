"""The OpenAI-compatible simulator, served for real on a free 127.0.0.1 port in a background thread."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import statistics
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from serve_app.simulator import DEFAULT_DATASETS_DIR, SimulatorConfig, build_simulator_app, load_answer_key

DATASETS = Path(__file__).resolve().parents[2] / "examples" / "datasets"


class ThreadedSimulator:
    """The simulator app on its own event loop in a daemon thread."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(build_simulator_app(self.config), access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.loop.run_until_complete(web.SockSite(self.runner, sock).start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __enter__(self) -> "ThreadedSimulator":
        self._thread.start()
        assert self._ready.wait(10), "simulator did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def sim():
    with ThreadedSimulator(SimulatorConfig(output_tokens=16)) as server:
        yield server


@pytest.fixture(scope="module")
def slow_sim():
    with ThreadedSimulator(SimulatorConfig(ttft_ms=50, itl_ms=10, output_tokens=20)) as server:
        yield server


def run(coro):
    return asyncio.run(coro)


async def _post(url: str, body: object | bytes) -> tuple[int, str, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


def post(url: str, body: object | bytes) -> tuple[int, str, bytes]:
    return run(_post(url, body))


def post_json(url: str, body: object) -> dict:
    status, _, raw = post(url, body)
    assert status == 200, raw
    return json.loads(raw)


def get_json(url: str) -> dict:
    async def _get():
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 200
                return await resp.json()

    return run(_get())


def sse_events(raw: bytes) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded except for the final '[DONE]'."""
    text = raw.decode()
    assert text.endswith("\n\n")
    events = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def chat_body(content: str, **extra) -> dict:
    return {"model": "my-model", "messages": [{"role": "user", "content": content}], **extra}


# ---------------------------------------------------------------- plain endpoints
def test_models_and_health(sim):
    models = get_json(f"{sim.url}/v1/models")
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["simulator"]
    assert models["data"][0]["object"] == "model"
    assert get_json(f"{sim.url}/health") == {"status": "ok"}


# ---------------------------------------------------------------- non-stream
def test_chat_non_stream_shape(sim):
    reply = post_json(f"{sim.url}/v1/chat/completions", chat_body("say something nice please"))
    assert reply["object"] == "chat.completion"
    assert reply["id"] and isinstance(reply["created"], int)
    assert reply["model"] == "my-model"
    (choice,) = reply["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    content = choice["message"]["content"]
    assert len(content.split()) == 16
    assert reply["usage"] == {"prompt_tokens": 4, "completion_tokens": 16, "total_tokens": 20}


def test_completion_non_stream_shape(sim):
    reply = post_json(f"{sim.url}/v1/completions", {"model": "m2", "prompt": "once upon a time"})
    assert reply["object"] == "text_completion"
    assert reply["model"] == "m2"
    (choice,) = reply["choices"]
    assert len(choice["text"].split()) == 16
    assert choice["finish_reason"] == "stop"
    assert reply["usage"] == {"prompt_tokens": 4, "completion_tokens": 16, "total_tokens": 20}


def test_prompt_tokens_count_every_message(sim):
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "you are terse"},
            {"role": "user", "content": [{"type": "text", "text": "two words"}]},
        ],
    }
    assert post_json(f"{sim.url}/v1/chat/completions", body)["usage"]["prompt_tokens"] == 5


# ---------------------------------------------------------------- stream
def test_chat_stream_one_token_per_chunk_and_usage(sim):
    status, content_type, raw = post(
        f"{sim.url}/v1/chat/completions",
        chat_body("stream me a reply", stream=True, stream_options={"include_usage": True}),
    )
    assert status == 200
    assert content_type.startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    token_chunks = events[:-2]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "my-model" for c in token_chunks)
    assert len({c["id"] for c in events[:-1]}) == 1
    tokens = [c["choices"][0]["delta"]["content"] for c in token_chunks]
    assert len(tokens) == 16
    assert all(t.strip() and len(t.split()) == 1 for t in tokens)
    assert token_chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in token_chunks] == [None] * 15 + ["stop"]
    assert usage_chunk["usage"] == {"prompt_tokens": 4, "completion_tokens": 16, "total_tokens": 20}
    # The streamed text is the non-stream reply.
    whole = post_json(f"{sim.url}/v1/chat/completions", chat_body("stream me a reply"))
    assert "".join(tokens) == whole["choices"][0]["message"]["content"]


def test_stream_without_include_usage_has_no_usage_chunk(sim):
    _, _, raw = post(f"{sim.url}/v1/chat/completions", chat_body("hello", stream=True))
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    assert len(events) == 17
    assert all("usage" not in e and e["choices"] for e in events[:-1])


def test_completion_stream(sim):
    _, _, raw = post(
        f"{sim.url}/v1/completions",
        {"model": "m", "prompt": "a b c", "stream": True, "stream_options": {"include_usage": True}},
    )
    events = sse_events(raw)
    token_chunks = events[:-2]
    assert all(c["object"] == "text_completion" for c in events[:-1])
    assert len(token_chunks) == 16 == events[-2]["usage"]["completion_tokens"]
    assert events[-2]["usage"]["prompt_tokens"] == 3
    assert token_chunks[-1]["choices"][0]["finish_reason"] == "stop"


# ---------------------------------------------------------------- max_tokens
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_max_tokens_caps_the_reply(sim, path):
    base = chat_body("x") if "chat" in path else {"model": "m", "prompt": "x"}
    reply = post_json(sim.url + path, {**base, "max_tokens": 5})
    choice = reply["choices"][0]
    text = choice["message"]["content"] if "chat" in path else choice["text"]
    assert len(text.split()) == 5
    assert choice["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 5

    stream = {"stream": True, "stream_options": {"include_usage": True}}
    _, _, raw = post(sim.url + path, {**base, "max_tokens": 3, **stream})
    events = sse_events(raw)
    assert len(events[:-2]) == 3
    assert events[-3]["choices"][0]["finish_reason"] == "length"
    assert events[-2]["usage"]["completion_tokens"] == 3


def test_max_tokens_above_reply_length_does_not_pad(sim):
    reply = post_json(f"{sim.url}/v1/chat/completions", chat_body("x", max_tokens=1000))
    assert reply["usage"]["completion_tokens"] == 16
    assert reply["choices"][0]["finish_reason"] == "stop"


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", b"{not json"),
        ("/v1/completions", b"{not json"),
        ("/v1/chat/completions", json.dumps({"model": "m"}).encode()),
        ("/v1/chat/completions", json.dumps({"model": "m", "messages": []}).encode()),
        ("/v1/completions", json.dumps({"model": "m"}).encode()),
        ("/v1/chat/completions", json.dumps(["a list"]).encode()),
        ("/v1/chat/completions", json.dumps(chat_body("x", max_tokens=-1)).encode()),
    ],
)
def test_bad_requests_get_openai_style_400(sim, path, body):
    status, content_type, raw = post(sim.url + path, body)
    assert status == 400
    assert content_type.startswith("application/json")
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


# ---------------------------------------------------------------- /stats
def test_stats_count_requests_and_the_body_fields_they_carried():
    with ThreadedSimulator(SimulatorConfig(output_tokens=4)) as server:
        assert get_json(f"{server.url}/stats") == {"requests_total": 0, "requests_in_flight": 0, "body_fields": {},
                                                   "headers": {}, "chat_lengths": {}}
        post(f"{server.url}/v1/chat/completions", chat_body("a"))
        post(f"{server.url}/v1/completions", {"model": "m", "prompt": "a", "stream": True})
        post(f"{server.url}/v1/completions", b"{bad")  # received, even though rejected
        get_json(f"{server.url}/v1/models")  # not counted
        stats = get_json(f"{server.url}/stats")
        assert stats["body_fields"] == {"model": 2, "messages": 1, "prompt": 1, "stream": 1}
        assert stats["chat_lengths"] == {"1": 1}  # the chat request, by how many messages it carried
        assert (stats["requests_total"], stats["requests_in_flight"], stats["headers"]["content-type"]) == (3, 0, 3)


def test_stats_show_requests_in_flight(slow_sim):
    async def scenario():
        async with aiohttp.ClientSession() as session:
            before = await (await session.get(f"{slow_sim.url}/stats")).json()
            async with session.post(f"{slow_sim.url}/v1/chat/completions", json=chat_body("x", stream=True)) as resp:
                await resp.content.readline()  # first token arrived; the reply is still streaming
                during = await (await session.get(f"{slow_sim.url}/stats")).json()
                await resp.read()
            after = await (await session.get(f"{slow_sim.url}/stats")).json()
        return before, during, after

    before, during, after = run(scenario())
    assert during["requests_in_flight"] == 1
    assert during["requests_total"] == before["requests_total"] + 1
    assert after["requests_in_flight"] == 0


# ---------------------------------------------------------------- latency
async def _timed_stream(session: aiohttp.ClientSession, url: str) -> tuple[float, list[float]]:
    """Seconds to the first token, and arrival times of every token chunk relative to the request start."""
    start = time.perf_counter()
    arrivals = []
    async with session.post(url, json=chat_body("time me", stream=True)) as resp:
        async for line in resp.content:
            if line.startswith(b"data: {"):
                arrivals.append(time.perf_counter() - start)
    return arrivals[0], arrivals


def test_stream_latency_matches_config(slow_sim):
    """ttft 50 ms, itl 10 ms: the first token after ~50 ms, then one every ~10 ms (absolute schedule)."""

    async def measure(url):
        async with aiohttp.ClientSession() as session:
            await _timed_stream(session, f"{url}/v1/chat/completions")  # warm the connection
            return [await _timed_stream(session, f"{url}/v1/chat/completions") for _ in range(5)]

    runs = run(measure(slow_sim.url))
    # This machine's own round trip, from a simulator without delays: busy (late in the suite), it added 2-4 ms to
    # every first token, which is not the simulator's doing.
    with ThreadedSimulator(SimulatorConfig(ttft_ms=0, itl_ms=0, output_tokens=20)) as instant:
        round_trip_ms = statistics.median(ttft * 1000 for ttft, _ in run(measure(instant.url)))
    assert all(len(arrivals) == 20 for _, arrivals in runs)
    # Medians over the runs, so that one scheduling hiccup of this (shared, small) machine does not fail the test.
    ttfts_ms = [ttft * 1000 for ttft, _ in runs]
    assert abs(statistics.median(ttfts_ms) - round_trip_ms - 50) < 3, (ttfts_ms, round_trip_ms)
    gaps_ms = [(b - a) * 1000 for _, arrivals in runs for a, b in zip(arrivals, arrivals[1:])]
    assert abs(statistics.median(gaps_ms) - 10) < 1.5, gaps_ms
    # Token i is due at ttft + i * itl: the error does not accumulate over the reply.
    spans_ms = [(arrivals[-1] - arrivals[0]) * 1000 for _, arrivals in runs]
    assert abs(statistics.median(spans_ms) - 19 * 10) < 3, spans_ms


def test_non_stream_latency_is_time_to_last_token(slow_sim):
    async def measure():
        async with aiohttp.ClientSession() as session:
            durations = []
            for _ in range(6):
                start = time.perf_counter()
                async with session.post(f"{slow_sim.url}/v1/chat/completions", json=chat_body("x")) as resp:
                    await resp.read()
                durations.append((time.perf_counter() - start) * 1000)
            return durations

    durations = run(measure())[1:]  # the first one also opens the connection
    # Never early; a few ms late at most (event-loop wake-up, client overhead).
    assert -1 < statistics.median(durations) - (50 + 19 * 10) < 5, durations


# ---------------------------------------------------------------- answers
def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_default_datasets_dir_is_the_shipped_samples():
    assert DEFAULT_DATASETS_DIR == DATASETS
    key = load_answer_key(DATASETS)
    gsm8k = _read_jsonl(DATASETS / "gsm8k" / "main" / "test.jsonl")
    assert key[gsm8k[0]["question"].strip()] == gsm8k[0]["answer"].split("####")[-1].strip()
    iq = _read_jsonl(DATASETS / "iquiz" / "IQ" / "test.jsonl")
    assert key[iq[0]["question"]] == iq[0]["answer"]
    assert all(v in "ABCD" for k, v in key.items() if any(k == r["question"] for r in iq))
    assert len(key) >= 90
    assert load_answer_key(DATASETS / "missing") == {}


def test_answers_a_shipped_gsm8k_question_after_few_shot_examples(sim):
    """The gsm8k prompt embeds train examples (with their answers) before the real question."""
    train = _read_jsonl(DATASETS / "gsm8k" / "main" / "train.jsonl")
    test = _read_jsonl(DATASETS / "gsm8k" / "main" / "test.jsonl")
    for record in test[:5]:
        shots = "\n\n".join(
            f"{r['question']}\n\nReasoning:\n{r['answer'].split('####')[0].strip()}\n\n"
            f"ANSWER: \\boxed{{{r['answer'].split('####')[-1].strip()}}}"
            for r in train[:4]
        )
        prompt = (
            f"Here are some examples of how to solve similar problems:\n\n{shots}\n\n{record['question']}\n"
            "Please reason step by step, and put your final answer within \\boxed{}."
        )
        content = post_json(f"{sim.url}/v1/chat/completions", chat_body(prompt))["choices"][0]["message"]["content"]
        expected = record["answer"].split("####")[-1].strip()
        assert re.findall(r"\\boxed\{([^}]*)\}", content) == [expected], content


def test_answers_a_shipped_iquiz_question(sim):
    from evalscope.utils.multi_choices import MultipleChoiceTemplate, prompt as mc_prompt

    record = _read_jsonl(DATASETS / "iquiz" / "EQ" / "test.jsonl")[3]
    # The prompt evalscope's iquiz adapter sends (its Chinese chain-of-thought template).
    prompt = mc_prompt(record["question"], record["choices"], MultipleChoiceTemplate.CHINESE_SINGLE_ANSWER_TEMPLATE_COT)
    content = post_json(f"{sim.url}/v1/chat/completions", chat_body(prompt))["choices"][0]["message"]["content"]
    assert content.endswith(f"答案：{record['answer']}"), content


def test_answers_an_english_multiple_choice_prompt_in_english_format(sim):
    record = _read_jsonl(DATASETS / "ceval" / "computer_network" / "val.jsonl")[1]
    prompt = (
        "Answer the following multiple choice question. The last line of your response should be of the "
        f"following format: 'ANSWER: [LETTER]'.\n\n{record['question']}\n\nA) {record['A']}\nB) {record['B']}\n"
        f"C) {record['C']}\nD) {record['D']}"
    )
    reply = post_json(f"{sim.url}/v1/completions", {"model": "m", "prompt": prompt})
    assert reply["choices"][0]["text"].endswith(f"ANSWER: {record['answer']}")


def test_unknown_prompt_gets_filler(sim):
    reply = post_json(f"{sim.url}/v1/chat/completions", chat_body("What is the capital of a country not listed?"))
    content = reply["choices"][0]["message"]["content"]
    assert "ANSWER" not in content and "boxed" not in content
    assert len(content.split()) == 16


def test_answers_the_question_at_the_end_of_a_long_prompt(sim):
    record = _read_jsonl(DATASETS / "gsm8k" / "main" / "test.jsonl")[7]
    prompt = "background " * 5000 + record["question"]
    content = post_json(f"{sim.url}/v1/chat/completions", chat_body(prompt))["choices"][0]["message"]["content"]
    assert content.endswith(f"\\boxed{{{record['answer'].split('####')[-1].strip()}}}.")


# ---------------------------------------------------------------- capacity model
def test_a_capacity_limited_simulator_serves_c_at_once_and_queues_the_rest_in_order():
    """max_concurrency 2, 100 ms per reply: of 6 requests sent together, two finish after each 100 ms."""

    async def scenario(url):
        async with aiohttp.ClientSession() as session:
            async def one():
                start = time.perf_counter()
                async with session.post(f"{url}/v1/chat/completions", json=chat_body("x")) as resp:
                    await resp.read()
                return time.perf_counter() - start

            return sorted(await asyncio.gather(*(one() for _ in range(6))))

    with ThreadedSimulator(SimulatorConfig(ttft_ms=100, output_tokens=1, max_concurrency=2)) as server:
        latencies_ms = [1000 * seconds for seconds in run(scenario(server.url))]
    for i, latency in enumerate(latencies_ms):
        served_in_round = i // 2 + 1  # requests 0-1 in the first 100 ms, 2-3 in the second, 4-5 in the third
        assert 100 * served_in_round <= latency < 100 * served_in_round + 60, latencies_ms


def _judge_prompt(gold: str, pred: str) -> str:
    """evalscope's default judge prompt, with the reply format its output contract appends."""
    from evalscope.metrics.judge.llm_judge import DEFAULT_PROMPT_TEMPLATE

    prompt = DEFAULT_PROMPT_TEMPLATE.replace("{question}", "What is 6 x 7?").replace("{gold}", gold)
    return prompt.replace("{pred}", pred) + '\n\nReply with a single JSON object:\n- "verdict": one of A, B'


@pytest.mark.parametrize("verdicts, pred, expected", [
    ("fair", "Six sevens make 42. The answer is \\boxed{42}.", "A"),
    ("fair", "The answer is \\boxed{41}.", "B"),
    ("harsh", "Six sevens make 42. The answer is \\boxed{42}.", "B"),
])
def test_as_an_llm_judge_it_replies_evalscopes_verdict_format(verdicts, pred, expected):
    from serve_app.simulator.answers import judge_verdict

    assert json.loads(judge_verdict(_judge_prompt("42", pred), verdicts)) == {"verdict": expected}
    assert judge_verdict("What is 6 x 7?", verdicts) is None  # any other prompt is the model's to answer
