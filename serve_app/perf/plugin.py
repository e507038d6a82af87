"""Extensions of evalscope's perf API plugins used by every shard."""

from __future__ import annotations

from typing import Any

from evalscope.perf.plugin.api.base import ApiPluginBase
from evalscope.perf.utils.benchmark_util import BenchmarkData

# aiohttp errors that mean a pooled keep-alive connection was already closed by the server (llama.cpp's
# server does this), raised before any response arrived: the request never reached the model.
_STALE_CONNECTION_ERRORS = ("ServerDisconnectedError", "Can not write request body", "Connection reset by peer")


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
