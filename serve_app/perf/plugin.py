"""Extensions of evalscope's perf API plugins used by every shard.

- `openai_lean`, registered in evalscope's ApiRegistry: the OpenAI plugin with a cheaper reader for streamed
  replies (the load generator's hottest loop), measuring exactly what evalscope measures.
- `resilient(...)`: any plugin, with requests that died on a stale keep-alive connection sent again.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from evalscope.perf.plugin.api.base import ApiPluginBase
from evalscope.perf.plugin.api.default_api import _parse_chat_delta
from evalscope.perf.plugin.api.openai_api import OpenaiPlugin
from evalscope.perf.plugin.registry import register_api
from evalscope.perf.utils.benchmark_util import BenchmarkData

# The lean variant used for each API a request names, where one exists.
LEAN_PLUGINS = {"openai": "openai_lean"}

# aiohttp errors that mean a pooled keep-alive connection was already closed by the server (llama.cpp's
# server does this), raised before any response arrived: the request never reached the model.
_STALE_CONNECTION_ERRORS = ("ServerDisconnectedError", "Can not write request body", "Connection reset by peer")


@register_api("openai_lean")
class LeanOpenaiPlugin(OpenaiPlugin):
    """evalscope's OpenAI plugin, reading streamed replies for about half the CPU.

    evalscope decodes every network read to str, re-splits SSE lines and runs json.loads per event. Here events
    are split as bytes (a multi-byte character never contains a newline byte) and parsed with orjson. Timing is
    evalscope's: TTFT at the first event with output, one inter-chunk latency per later event with output,
    token counts from the usage event. Non-streamed requests and non-SSE replies go through evalscope's code.
    """

    async def process_request(self, client_session: Any, url: str, headers: dict, body: dict) -> BenchmarkData:
        if not body.get("stream"):
            return await super().process_request(client_session, url, headers, body)
        data = orjson.dumps(body)
        output = BenchmarkData(request=data.decode(), is_stream=True)
        start = output.start_time = time.perf_counter()
        try:
            async with client_session.post(
                url, data=data, headers={"Content-Type": "application/json", **headers}
            ) as response:
                if response.status != 200 or "text/event-stream" not in response.headers.get("Content-Type", ""):
                    output.status_code = response.status
                    output.error = (await response.text())[:2000] or response.reason or f"HTTP {response.status}"
                    output.success = False
                    output.completed_time = time.perf_counter()
                    return output
                await self._read_events(response, output, start)
        except Exception as exc:  # the same outcome evalscope gives: a failed request with the reason
            output.success = False
            output.error = f"{type(exc).__name__}: {exc}"
            output.completed_time = time.perf_counter()
        return output

    async def _read_events(self, response: Any, output: BenchmarkData, start: float) -> None:
        buffer = b""
        last_output: float | None = None
        latest = start
        async for received in response.content.iter_any():
            buffer += received
            if b"\r" in buffer:
                buffer = buffer.replace(b"\r\n", b"\n")
            *events, buffer = buffer.split(b"\n\n")
            now = time.perf_counter()
            for event in events:
                last_output = self._on_event(event, output, start, now, last_output)
            latest = now if events else latest
        if buffer.strip():
            latest = time.perf_counter()
            last_output = self._on_event(buffer, output, start, latest, last_output)
        output.success = output.error is None
        output.completed_time = latest
        output.query_latency = latest - start

    @staticmethod
    def _on_event(event: bytes, output: BenchmarkData, start: float, now: float, last_output: float | None):
        if event.startswith(b"data: ") and b"\n" not in event:  # the usual one-line event
            payload = event[6:]
        else:
            payload = b"".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        if not payload or payload == b"[DONE]":
            return last_output
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return last_output
        if not isinstance(data, dict):
            return last_output
        if data.get("error") is not None or data.get("object") == "error":
            output.error = payload.decode(errors="replace")
        if choices := data.get("choices"):
            if data.get("object") == "text_completion":
                has_output = bool(choices[0].get("text"))
            else:
                delta = choices[0].get("delta") or {}
                # Plain text content is the common case; anything else gets evalscope's full rules.
                content = delta.get("content") if isinstance(delta, dict) else None
                has_output = (isinstance(content, str) and content != "") or _parse_chat_delta(delta)[1]
            if has_output:
                if last_output is None:
                    output.first_chunk_latency = now - start
                else:
                    output.inter_chunk_latency.append(now - last_output)
                last_output = now
            if last_output is not None:
                output.n_decode_chunks += 1
            output.response_messages.append(data)
        if usage := data.get("usage"):
            output.prompt_tokens = usage.get("prompt_tokens")
            output.completion_tokens = usage.get("completion_tokens")
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and details.get("cached_tokens") is not None:
                output.real_cached_tokens = details["cached_tokens"]
        return last_output


class _RetryStaleConnection:
    """Resend once when a request died on a connection the server had already closed.

    Without this, every connection a server closes between requests turns into one failed request.
    """

    async def process_request(self, client_session: Any, url: str, headers: dict, body: dict) -> BenchmarkData:
        output = await super().process_request(client_session, url, headers, body)
        if _died_on_a_stale_connection(output):
            output = await super().process_request(client_session, url, headers, body)
        return output


def _died_on_a_stale_connection(output: BenchmarkData) -> bool:
    if output.success or output.status_code is not None or output.response_messages:
        return False
    return any(marker in (output.error or "") for marker in _STALE_CONNECTION_ERRORS)


def resilient(plugin_class: type[ApiPluginBase]) -> type[ApiPluginBase]:
    """The given evalscope API plugin with stale keep-alive connections retried."""
    return type(f"Resilient{plugin_class.__name__}", (_RetryStaleConnection, plugin_class), {})
