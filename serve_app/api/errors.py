"""Every error leaves the API as {"status": "error", "message": ...}: 400 for bad input (never FastAPI's 422)."""

from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.auth import OPEN_PATHS
from serve_app.compare.jobs import JobNotSucceeded
from serve_app.errors import JobEndedUnfinished, RequestError, RunError, StorageError
from serve_app.eval.resume import NotResumable
from serve_app.jobs.manager import IdempotencyConflict, JobFinished, JobNotFound, QueueFull
from serve_app.schemas import ErrorResponse

logger = logging.getLogger("serve_app.api")


# Union branches pydantic names in an error's location (`rate.float`, `rate.list[float]`) for fields that take a
# value or a list of them (a sweep).
_SWEEP_BRANCHES = ("int", "float", "list[int]", "list[float]")


def _without_sweep_branches(errors: list[dict]) -> list[dict]:
    """A scalar that fails a field taking a value or a list reads as that field's error, not also as "not a list"."""
    kept = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if loc and loc[-1] in _SWEEP_BRANCHES:
            if error.get("type") == "list_type" and any(tuple(other.get("loc", ()))[:-1] == loc[:-1]
                                                        for other in errors if other is not error):
                continue
            error = {**error, "loc": loc[:-1]}
        kept.append(error)
    return kept


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in _without_sweep_branches(exc.errors()):
        location = ".".join(str(part) for part in error.get("loc", ())[1:]) or "body"
        message = error.get("msg", "invalid value")
        if error.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        elif error.get("type") == "missing" and location == "body":
            message = "a JSON body is required"
        problems.append(f"{location}: {message}")
    return "invalid request: " + "; ".join(problems)


def _respond(
    request: Request, status: int, message: str, exc: BaseException | None = None, headers: dict | None = None
) -> JSONResponse:
    debug = getattr(request.app.state, "debug", False) or getattr(request.state, "debug", False)
    trace = "".join(traceback.format_exception(exc)) if debug and exc is not None else None
    body = ErrorResponse(message=message, traceback=trace).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=body, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _respond(request, 400, _validation_message(exc))

    @app.exception_handler(RequestError)
    async def _unrunnable(request: Request, exc: RequestError) -> JSONResponse:
        return _respond(request, 400, str(exc), exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"no such path: {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return _respond(request, exc.status_code, message, headers=exc.headers)  # e.g. Allow with a 405

    @app.exception_handler(QueueFull)
    async def _full(request: Request, exc: QueueFull) -> JSONResponse:
        return _respond(request, 429, str(exc), headers={"Retry-After": str(round(exc.retry_after_s))})

    @app.exception_handler(IdempotencyConflict)
    async def _conflict(request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return _respond(request, 409, str(exc))

    @app.exception_handler(JobFinished)
    async def _finished(request: Request, exc: JobFinished) -> JSONResponse:
        return _respond(request, 409, str(exc))

    @app.exception_handler(NotResumable)
    @app.exception_handler(JobNotSucceeded)
    async def _wrong_state(request: Request, exc: NotResumable | JobNotSucceeded) -> JSONResponse:
        return _respond(request, 409, str(exc))

    @app.exception_handler(JobNotFound)
    async def _no_job(request: Request, exc: JobNotFound) -> JSONResponse:
        return _respond(request, 404, f"no job {exc.args[0]!r}")

    @app.exception_handler(StorageError)
    async def _unwritable(request: Request, exc: StorageError) -> JSONResponse:
        logger.error("storage: %s", exc)
        return _respond(request, 507 if exc.full else 500, str(exc), exc)

    @app.exception_handler(JobEndedUnfinished)
    async def _unfinished(request: Request, exc: JobEndedUnfinished) -> JSONResponse:
        return _respond(request, 409, str(exc))

    @app.exception_handler(RunError)
    async def _failed(request: Request, exc: RunError) -> JSONResponse:
        logger.warning("run failed: %s", exc)
        return _respond(request, 500, str(exc), exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return _respond(request, 500, f"internal error: {type(exc).__name__}: {exc}", exc)


def document_errors(app: FastAPI, authenticated: bool) -> None:
    """Make the OpenAPI document say what the API answers: 400 (not FastAPI's 422) for invalid input, 401 when
    tokens are required (declared as a bearer scheme, so /docs can send one), 413 for an oversized body, always
    in the ErrorResponse shape."""
    generate = app.openapi
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()  # caches itself in app.openapi_schema, edited in place below
            for path, operations in schema["paths"].items():
                for operation in operations.values():
                    responses = operation["responses"]
                    if responses.pop("422", None) is not None:
                        responses.setdefault("400", {"description": "Invalid parameters", **error})
                    if "requestBody" in operation:
                        responses.setdefault("413", {"description": "The body is over max_body_bytes", **error})
                    if authenticated and path not in OPEN_PATHS:
                        responses["401"] = {"description": "A valid bearer token is required", **error}
                        operation["security"] = [{"bearer": []}]
            if authenticated:
                schema["components"].setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
            for unused in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unused, None)
        return app.openapi_schema

    app.openapi = openapi
