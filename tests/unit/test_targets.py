import asyncio
import time

import pytest

from serve_app.errors import RequestError
from serve_app.simulator.process import free_port
from serve_app.targets import check_target, unreachable_reason

ALLOWED = ["vllm.internal", "10.20.0.0/16", "127.0.0.1/32"]


@pytest.mark.parametrize(
    "url",
    ["http://vllm.internal:8000/v1", "https://VLLM.internal/v1/chat/completions", "http://10.20.3.4:8000/v1",
     "http://127.0.0.1:8801/v1"],
)
def test_allowed_hosts_and_networks_pass(url):
    asyncio.run(check_target(url, ALLOWED))


@pytest.mark.parametrize(
    "url", ["http://10.21.0.1/v1", "http://other.internal/v1", "http://169.254.169.254/latest/meta-data"]
)
def test_other_targets_are_refused_naming_the_allowlist(url):
    with pytest.raises(RequestError, match="allowed targets: vllm.internal, 10.20.0.0/16, 127.0.0.1/32"):
        asyncio.run(check_target(url, ALLOWED))


def test_non_http_urls_are_refused_and_an_empty_allowlist_allows_all():
    with pytest.raises(RequestError, match="not an http"):
        asyncio.run(check_target("file:///etc/passwd", ALLOWED))
    asyncio.run(check_target("http://anything.example/v1", []))


def test_unreachable_reason_says_why_and_returns_quickly():
    closed_port = free_port()
    started = time.monotonic()
    reason = asyncio.run(unreachable_reason(f"http://127.0.0.1:{closed_port}/v1", timeout_s=2))
    assert reason.startswith(f"127.0.0.1:{closed_port}:") and "refused" in reason.lower()
    assert time.monotonic() - started < 2


def test_a_listening_endpoint_is_reachable():
    async def probe_own_server():
        server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await unreachable_reason(f"http://127.0.0.1:{port}/v1/chat/completions", timeout_s=2)

    assert asyncio.run(probe_own_server()) is None
