"""Refuse request bodies over a size limit before they are read into memory, parsed or validated.

FastAPI's own `max_body_size` answers some oversized bodies in plain text; this one always answers in the API's
documented error shape.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.schemas import ErrorResponse


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, by its Content-Length or, when chunked, as it arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(self.message, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # An HTTPException passes FastAPI's body reader unchanged and reaches the API's error handler.
                raise HTTPException(413, self.message)
            return message

        await self.app(scope, receive_within_limit, send)

    @property
    def message(self) -> str:
        return f"the request body is over this service's limit of {self.max_bytes} bytes (max_body_bytes)"


async def _refuse(message: str, send: Send) -> None:
    body = ErrorResponse(message=message).model_dump_json(exclude_none=True).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
