"""The service as the CLI sees it, for one perf job that runs until cancelled, in a thread on a free port: the
answers' timing is the test's to set (a slow submission, a cancel that never comes), which the real service's is
not."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

JOB_ID = "job-1"
JOB_PATH = f"/api/v1/jobs/{JOB_ID}"


def job_document(status: str, **fields: object) -> dict:
    """A JobView as the service answers it."""
    return {"job_id": JOB_ID, "kind": "perf", "status": status, "model": "m", "created_at": "2026-01-01T00:00:00+00:00",
            "progress": {"done": 1, "total": 10, "percent": 10.0}, "request": {}, "output_dir": "/o",
            "links": {"self": JOB_PATH, "report": f"{JOB_PATH}/report"}, **fields}


class FakeService:
    def __init__(self, submit_delay_s: float = 0.0, cancel_delay_s: float = 0.0) -> None:
        self.submit_delay_s, self.cancel_delay_s = submit_delay_s, cancel_delay_s
        self.status = "running"
        self.submission_received = threading.Event()
        self.cancel_received = threading.Event()
        self.closed = threading.Event()
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> FakeService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the CLI hanging up mid-answer, as the tests make it do


def _handler(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.startswith("/api/v1/perf"):
                service.submission_received.set()
                service.closed.wait(service.submit_delay_s)
                self._json(202, job_document(service.status))
            elif self.path == f"{JOB_PATH}/cancel":
                service.cancel_received.set()
                service.closed.wait(service.cancel_delay_s)
                service.status = "cancelled"
                self._json(200, job_document(service.status))

        def do_GET(self) -> None:
            if self.path == JOB_PATH:
                self._json(200, job_document(service.status))
            elif self.path == f"{JOB_PATH}/events":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self._event()
                while service.status == "running" and not service.closed.is_set():
                    time.sleep(0.05)
                self._event()

        def _event(self) -> None:
            self.wfile.write(f"event: job\ndata: {json.dumps({'status': service.status})}\n\n".encode())
            self.wfile.flush()

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # quiet
            pass

    return Handler
