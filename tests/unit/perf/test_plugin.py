"""The lean stream reader must measure exactly what evalscope's own OpenAI plugin measures."""

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from evalscope.perf.arguments import Arguments
from evalscope.perf.plugin import ApiRegistry

from serve_app.perf.plugin import LEAN_PLUGINS, resilient
from serve_app.simulator import SimulatorConfig, build_simulator_app


def _chunk(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _odd_server(request: web.Request) -> web.StreamResponse:
    """Streams split across reads, CRLF separators, an empty delta, reasoning output and an in-band error."""
    mode = request.query.get("mode")
    if mode == "500":
        return web.json_response({"error": {"message": "overloaded"}}, status=500)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    pieces = [
        _chunk({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
        _chunk({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]}),
        _chunk({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": ""}}]}),
        _chunk({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "héllo"}}]}),
    ]
    if mode == "error":
        pieces.append(_chunk({"object": "error", "message": "model crashed"}))
    pieces.append(_chunk({"object": "chat.completion.chunk", "choices": [],
                          "usage": {"prompt_tokens": 7, "completion_tokens": 3}}))
    pieces.append(b"data: [DONE]\n\n")
    stream = b"".join(pieces).replace(b"\n\n", b"\r\n\r\n")
    for i in range(0, len(stream), 37):  # arbitrary read boundaries, through multi-byte characters too
        await response.write(stream[i : i + 37])
        await asyncio.sleep(0.002)
    return response


def _app() -> web.Application:
    app = build_simulator_app(SimulatorConfig(ttft_ms=15, itl_ms=4, output_tokens=6))
    app.router.add_post("/odd/chat/completions", _odd_server)
    return app


async def _measure(plugin_name: str, path: str) -> list:
    async with TestServer(_app()) as server:
        url = str(server.make_url(path))
        args = Arguments(model="m", url=url, api="openai", max_tokens=6, stream=True)
        plugin = ApiRegistry.get_class(plugin_name)(args)
        body = plugin.build_request([{"role": "user", "content": "say something"}])
        async with aiohttp.ClientSession() as session:
            return [await plugin.process_request(session, url, {}, dict(body)) for _ in range(3)]


def _observable(record):
    return (record.success, record.is_stream, record.status_code, record.error is None,
            record.prompt_tokens, record.completion_tokens, len(record.inter_chunk_latency), record.n_decode_chunks)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/odd/chat/completions", "/odd/chat/completions?mode=error"])
def test_lean_reader_reports_what_evalscope_reports(path):
    stock = asyncio.run(_measure("openai", path))
    lean = asyncio.run(_measure(LEAN_PLUGINS["openai"], path))
    assert [_observable(r) for r in lean] == [_observable(r) for r in stock]
    # The fastest of each reader's requests: a busy machine delays single requests of either by tens of ms.
    for latency in ("first_chunk_latency", "query_latency"):
        ours, theirs = (min(getattr(record, latency) for record in records) for records in (lean, stock))
        assert ours == pytest.approx(theirs, abs=0.01), latency
    assert all(record.completed_time >= record.start_time for record in lean)


def test_simulator_timing_is_seen_by_the_lean_reader():
    records = asyncio.run(_measure(LEAN_PLUGINS["openai"], "/v1/chat/completions"))
    for record in records:
        assert record.success and record.completion_tokens == 6
        assert record.first_chunk_latency >= 0.014  # the simulator waits 15 ms; the reader never sees it early
        assert len(record.inter_chunk_latency) == 5
        # Token i is due at 15 + 4 i ms: a late gap is followed by a short one, so the span is what holds (20 ms;
        # bounded loosely above, as a busy machine delays the reader's wake-ups, never the simulator's deadlines).
        assert 0.015 < sum(record.inter_chunk_latency) < 0.100


def test_http_errors_fail_the_request_with_the_status():
    (record, *_) = asyncio.run(_measure(LEAN_PLUGINS["openai"], "/odd/chat/completions?mode=500"))
    assert not record.success and record.status_code == 500 and "overloaded" in record.error


def test_stale_keep_alive_connection_is_retried_once():
    attempts = []

    class Flaky(ApiRegistry.get_class("openai")):
        async def process_request(self, *args):
            attempts.append(1)
            record = await super().process_request(*args)
            if len(attempts) == 1:
                record.success, record.response_messages = False, []
                record.error = "aiohttp.client_exceptions.ServerDisconnectedError: Server disconnected"
            return record

    async def run():
        async with TestServer(_app()) as server:
            url = str(server.make_url("/v1/chat/completions"))
            plugin = resilient(Flaky)(Arguments(model="m", url=url, api="openai", max_tokens=2, stream=True))
            body = plugin.build_request([{"role": "user", "content": "hi"}])
            async with aiohttp.ClientSession() as session:
                return await plugin.process_request(session, url, {}, body)

    assert asyncio.run(run()).success
    assert len(attempts) == 2
