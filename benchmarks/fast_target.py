"""A minimal OpenAI-style streaming target that costs almost no CPU, so the load generator is what gets measured.

Raw asyncio protocol on uvloop, a prebuilt reply (N content chunks, a usage chunk, [DONE]), keep-alive, and one
process per `--workers` sharing the port (SO_REUSEPORT). Without latency the reply goes out in one write; with
`--ttft-ms`/`--itl-ms` each chunk is written by a loop timer at its absolute due time (start + ttft + i * itl),
a few microseconds per chunk, so the target's own delay error stays far below what a load generator adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket


def build_reply(tokens: int) -> tuple[bytes, list[bytes]]:
    """The response head and its body pieces: one per token, the last one carrying usage and [DONE]."""
    chunks = [
        b"data: "
        + json.dumps(
            {"id": "x", "object": "chat.completion.chunk", "model": "fast",
             "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": None}]}
        ).encode()
        + b"\n\n"
        for _ in range(tokens)
    ]
    usage = {"id": "x", "object": "chat.completion.chunk", "model": "fast", "choices": [],
             "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": tokens + 8}}
    chunks[-1] += b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n"
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        f"Content-Length: {sum(map(len, chunks))}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    return head, chunks


class _Protocol(asyncio.Protocol):
    def __init__(self, head: bytes, chunks: list[bytes], ttft_s: float, itl_s: float) -> None:
        self.head, self.chunks = head, chunks
        self.whole = head + b"".join(chunks)
        self.ttft_s, self.itl_s = ttft_s, itl_s
        self.buffer = b""
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15 : head.find(b"\r\n", marker) if head.find(b"\r\n", marker) > 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self._reply()

    def _reply(self) -> None:
        if not self.ttft_s and not self.itl_s:
            self.transport.write(self.whole)
            return
        start = self.loop.time()
        self.transport.write(self.head)
        for i, chunk in enumerate(self.chunks):
            self.loop.call_at(start + self.ttft_s + i * self.itl_s, self._send, chunk)

    def _send(self, chunk: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(chunk)


def _serve(port: int, tokens: int, ttft_ms: float, itl_ms: float) -> None:
    import uvloop

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    head, chunks = build_reply(tokens)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: _Protocol(head, chunks, ttft_ms / 1000, itl_ms / 1000), sock=sock, backlog=4096
        )
        await server.serve_forever()

    uvloop.run(main())


def start(
    port: int, tokens: int = 20, workers: int = 1, ttft_ms: float = 0.0, itl_ms: float = 0.0
) -> list[multiprocessing.Process]:
    processes = [
        multiprocessing.Process(target=_serve, args=(port, tokens, ttft_ms, itl_ms), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    return processes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8802)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=0.0)
    options = parser.parse_args()
    for process in start(options.port, options.tokens, options.workers, options.ttft_ms, options.itl_ms):
        process.join()
