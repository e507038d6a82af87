"""A lightweight OpenAI-compatible server for demos, tests and load-test calibration.

It answers the questions of the shipped sample datasets (examples/datasets) correctly, in the format evalscope's
answer extractors read, and any other prompt with filler words. A "token" is one whitespace-separated word of
the reply; every stream chunk carries one token. Latency is injected against absolute deadlines:
token ``i`` (0-based) is sent at ``start + ttft + i * itl``, so sleep errors do not accumulate.

With ``max_concurrency`` C it is a server of known capacity: at most C requests are served at once, the others
wait in FIFO order, and ``start`` is when a request's service begins (its wait shows in its TTFT). Each request is
served in a fixed time, so C / that time is its true capacity in requests per second.

The hot path is kept cheap on purpose (the simulator is a calibration target): no pydantic, request bodies are
parsed with the stdlib json module, and stream chunks are assembled from prebuilt byte fragments.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from serve_app.simulator.answers import judge_verdict, load_answer_key

logger = logging.getLogger(__name__)

DEFAULT_DATASETS_DIR = Path(__file__).resolve().parents[2] / "examples" / "datasets"

_FILLER_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven small birds sing softly near an old stone bridge"
).split()

_JSON_CT = "application/json"
_DONE = b"data: [DONE]\n\n"
_MATCH_CACHE_SIZE = 1024
# Questions are searched in the end of the prompt only (the real question of an evalscope prompt sits there,
# after any few-shot examples), which bounds the per-request cost of long load-test prompts.
_MATCH_WINDOW_CHARS = 8192


@dataclass(frozen=True)
class SimulatorConfig:
    ttft_ms: float = 0.0
    """Delay before the first token."""
    itl_ms: float = 0.0
    """Delay between two tokens."""
    output_tokens: int = 16
    """Tokens per reply for prompts it has no answer for (capped by max_tokens)."""
    model: str = "simulator"
    """Model id listed by /v1/models (replies echo the requested model)."""
    max_concurrency: int = 0
    """Requests served at once; later ones wait their turn (0: no limit)."""
    datasets_dir: Path | None = None
    """Where the answer key is read; default: the repository's examples/datasets."""
    judge: str = "fair"
    """As evalscope's LLM judge: fair (A when the predicted answer contains the reference) or harsh (always B)."""


class _BadRequest(Exception):
    pass


def _error_response(message: str, status: int = 400) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=_JSON_CT)


def _content_text(content: Any) -> str:
    """Text of a chat message content: a string, or a list of parts of which the text parts count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    return ""


class _Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.ttft_s = max(0.0, config.ttft_ms) / 1000.0
        self.itl_s = max(0.0, config.itl_ms) / 1000.0
        datasets_dir = config.datasets_dir if config.datasets_dir is not None else DEFAULT_DATASETS_DIR
        self.answer_key = load_answer_key(Path(datasets_dir))
        if not self.answer_key:
            logger.warning("simulator: no answer key found under %s; every reply is filler", datasets_dir)
        # Longest keys first, so that on equal end positions the longer (more specific) question wins.
        self._keys = sorted(self.answer_key, key=len, reverse=True)
        self._match_cache: dict[str, str | None] = {}
        self._ids = itertools.count(1)
        self.requests_total = 0
        self.body_fields: Counter[str] = Counter()  # how many requests carried each top-level body field
        self.headers: Counter[str] = Counter()  # ... and each header (by lower-case name)
        self.chat_lengths: Counter[int] = Counter()  # chat requests by how many messages they carried
        self.requests_in_flight = 0
        self._slots = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency > 0 else None
        # Filler tokens, JSON-encoded once: first token without, later tokens with their leading space.
        self._filler_words = [_FILLER_WORDS[i % len(_FILLER_WORDS)] for i in range(max(0, config.output_tokens))]
        self._filler_json = [json.dumps(w if i == 0 else " " + w).encode() for i, w in enumerate(self._filler_words)]

    # ---------------------------------------------------------------- answers
    def match_answer(self, prompt: str) -> str | None:
        """Answer of the question that appears last in the prompt (the real one after any few-shot examples)."""
        window = prompt[-_MATCH_WINDOW_CHARS:]
        cached = self._match_cache.get(window, self)
        if cached is not self:
            return cached  # type: ignore[return-value]
        best_end = -1
        best: str | None = None
        for key in self._keys:
            pos = window.rfind(key)
            if pos >= 0 and pos + len(key) > best_end:
                best_end = pos + len(key)
                best = key
        answer = self.answer_key[best] if best is not None else None
        if len(self._match_cache) >= _MATCH_CACHE_SIZE:
            self._match_cache.clear()
        self._match_cache[window] = answer
        return answer

    def reply_words(self, prompt: str) -> list[str] | None:
        """Words of the reply to a known question or to a judge's prompt, or None for filler."""
        verdict = judge_verdict(prompt, self.config.judge)
        if verdict is not None:
            return verdict.split()
        answer = self.match_answer(prompt)
        if answer is None:
            return None
        if len(answer) == 1 and answer.isalpha():
            # Multiple choice: evalscope's Chinese templates (iquiz, ceval) are parsed from '答案：X',
            # the English ones from 'ANSWER: X'.
            marker = f"答案：{answer}" if "答案" in prompt else f"ANSWER: {answer}"
            return f"Comparing the options one by one, the best choice is {answer}. {marker}".split()
        return f"Working through the problem step by step gives {answer}. The answer is \\boxed{{{answer}}}.".split()

    # ---------------------------------------------------------------- request handling
    @staticmethod
    def _max_tokens(body: dict, chat: bool) -> int | None:
        value = body.get("max_tokens")
        if value is None and chat:
            value = body.get("max_completion_tokens")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _BadRequest("max_tokens must be a positive integer")
        return value

    @staticmethod
    def _parse_chat(body: dict) -> tuple[str, int]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("'messages' must be a non-empty list")
        prompt_tokens = 0
        last_user = ""
        for message in messages:
            if not isinstance(message, dict):
                raise _BadRequest("each message must be an object")
            text = _content_text(message.get("content"))
            prompt_tokens += len(text.split())
            if message.get("role") == "user":
                last_user = text
        if not last_user:
            last_user = _content_text(messages[-1].get("content"))
        return last_user, prompt_tokens

    @staticmethod
    def _parse_completion(body: dict) -> tuple[str, int]:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return prompt, len(prompt.split())
        if isinstance(prompt, list) and prompt:
            if all(isinstance(p, str) for p in prompt):
                text = "\n".join(prompt)
                return text, len(text.split())
            if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
                return "", len(prompt)  # token ids
        raise _BadRequest("'prompt' must be a string or a non-empty list of strings")

    async def handle(self, request: web.Request, chat: bool) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.requests_total += 1
        self.requests_in_flight += 1
        self.headers.update(name.lower() for name in request.headers)
        serving = False
        try:
            try:
                raw = await request.read()
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    raise _BadRequest("request body is not valid JSON") from None
                if not isinstance(body, dict):
                    raise _BadRequest("request body must be a JSON object")
                self.body_fields.update(body.keys())
                if chat and isinstance(body.get("messages"), list):
                    self.chat_lengths[len(body["messages"])] += 1
                prompt, prompt_tokens = self._parse_chat(body) if chat else self._parse_completion(body)
                max_tokens = self._max_tokens(body, chat)
                model = body.get("model")
                if not isinstance(model, str) or not model:
                    model = self.config.model
                stream = bool(body.get("stream", False))
                stream_options = body.get("stream_options")
                include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
            except _BadRequest as exc:
                return _error_response(str(exc))
            if self._slots is not None:
                await self._slots.acquire()
                serving, start = True, loop.time()

            words = self.reply_words(prompt)
            token_json: list[bytes] | None = None
            if words is None:
                words = self._filler_words
                token_json = self._filler_json
            finish_reason = "stop"
            if max_tokens is not None and len(words) > max_tokens:
                words = words[:max_tokens]
                finish_reason = "length"
                if token_json is not None:
                    token_json = token_json[:max_tokens]
            if token_json is None:
                token_json = [json.dumps(w if i == 0 else " " + w).encode() for i, w in enumerate(words)]
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            }
            rid = f"{'chatcmpl' if chat else 'cmpl'}-sim{next(self._ids)}"
            created = int(time.time())
            if stream:
                return await self._stream(
                    request, loop, start, chat, rid, created, model, token_json, finish_reason, usage, include_usage
                )
            # Non-stream: the reply is complete when its last token would have been produced.
            delay = start + self.ttft_s + max(0, len(words) - 1) * self.itl_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            text = " ".join(words)
            if chat:
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            payload = {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
            return web.Response(body=json.dumps(payload, ensure_ascii=False).encode(), content_type=_JSON_CT)
        finally:
            self.requests_in_flight -= 1
            if serving:
                self._slots.release()

    async def _stream(
        self,
        request: web.Request,
        loop: asyncio.AbstractEventLoop,
        start: float,
        chat: bool,
        rid: str,
        created: int,
        model: str,
        token_json: list[bytes],
        finish_reason: str,
        usage: dict,
        include_usage: bool,
    ) -> web.StreamResponse:
        head = (
            f'data: {{"id":"{rid}","object":"{"chat.completion.chunk" if chat else "text_completion"}",'
            f'"created":{created},"model":{json.dumps(model, ensure_ascii=False)},"choices":'
        ).encode()
        if chat:
            first_prefix = head + b'[{"index":0,"delta":{"role":"assistant","content":'
            prefix = head + b'[{"index":0,"delta":{"content":'
            suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'
            last_suffix = b'},"logprobs":null,"finish_reason":"' + finish_reason.encode() + b'"}]}\n\n'
        else:
            first_prefix = prefix = head + b'[{"index":0,"text":'
            suffix = b',"logprobs":null,"finish_reason":null}]}\n\n'
            last_suffix = b',"logprobs":null,"finish_reason":"' + finish_reason.encode() + b'"}]}\n\n'
        tail = b""
        if include_usage:
            tail = head + b'[],"usage":' + json.dumps(usage).encode() + b"}\n\n"
        tail += _DONE

        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        n = len(token_json)
        if n == 0:
            token_json = [b'""']
            n = 1
        ttft, itl = self.ttft_s, self.itl_s
        chunks = [
            b"".join((first_prefix if i == 0 else prefix, tok, last_suffix if i == n - 1 else suffix))
            for i, tok in enumerate(token_json)
        ]
        chunks[-1] += tail
        try:
            if itl == 0:
                # Every token is due at the same moment: one write (fewer syscalls under load).
                delay = start + ttft - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await response.write(b"".join(chunks))
            else:
                for i, chunk in enumerate(chunks):
                    delay = start + ttft + i * itl - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away; nothing left to send
        return response

    # ---------------------------------------------------------------- handlers
    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self.handle(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self.handle(request, chat=False)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.config.model, "object": "model", "owned_by": "simulator"}]}
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"requests_total": self.requests_total, "requests_in_flight": self.requests_in_flight,
             "body_fields": self.body_fields, "headers": self.headers, "chat_lengths": self.chat_lengths}
        )


SIMULATOR_KEY = web.AppKey("simulator", _Simulator)


def build_simulator_app(config: SimulatorConfig = SimulatorConfig()) -> web.Application:
    """The simulator as an aiohttp application (serve it with aiohttp's runners or `run_simulator`)."""
    sim = _Simulator(config)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SIMULATOR_KEY] = sim
    app.router.add_post("/v1/chat/completions", sim.chat_completions)
    app.router.add_post("/v1/completions", sim.completions)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/health", sim.health)
    app.router.add_get("/stats", sim.stats)
    return app


def run_simulator(host: str = "127.0.0.1", port: int = 8801, config: SimulatorConfig = SimulatorConfig()) -> None:
    """Serve the simulator until interrupted (blocking); uses uvloop when it is installed."""
    app = build_simulator_app(config)
    loop: asyncio.AbstractEventLoop | None = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        backlog=2048,
        print=lambda _msg: print(f"simulator listening on http://{host}:{port}/v1", flush=True),
        loop=loop,
    )
