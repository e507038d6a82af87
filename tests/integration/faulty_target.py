"""An OpenAI-compatible endpoint that misbehaves on purpose, one way per path prefix:

- /error/...   answers every request with HTTP 500;
- /flaky-KEY/... answers the odd-numbered requests (the 1st, 3rd, ...) correctly and the others with HTTP 500,
  counting the requests of each KEY apart, so a test that picks its own KEY counts only its own requests;
- /garbage/... answers 200 with a body that is not JSON;
- /hang/...    never answers;
- /echo/...    answers 401 with the request's Authorization header in its message, as careless gateways do.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading

from aiohttp import web

from serve_app.simulator.process import free_port

_REPLY = {
    "id": "chatcmpl-faulty",
    "object": "chat.completion",
    "model": "faulty",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "The answer is 1."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13},
}


class FaultyTarget:
    def __init__(self) -> None:
        self.port = free_port()
        self._counters: dict[str, itertools.count] = collections.defaultdict(lambda: itertools.count(1))
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    def url(self, fault: str, path: str = "/v1/chat/completions") -> str:
        return f"http://127.0.0.1:{self.port}/{fault}{path}"

    def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/{fault}/v1/chat/completions", self._answer)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        fault, _, key = request.match_info["fault"].partition("-")
        if fault == "hang":
            await asyncio.sleep(3600)
        if fault == "garbage":
            return web.Response(text="<html>upstream exploded</html>", content_type="text/html")
        if fault == "echo":
            message = f"invalid credentials: {request.headers.get('Authorization', '')}"
            return web.json_response({"error": {"message": message, "type": "auth_error"}}, status=401)
        if fault == "error" or (fault == "flaky" and next(self._counters[key]) % 2 == 0):
            return web.json_response({"error": {"message": "injected failure", "type": "server_error"}}, status=500)
        return web.json_response(_REPLY)
