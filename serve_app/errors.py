"""The two ways a request can fail, shared by planning, running and the HTTP layer."""


class RequestError(ValueError):
    """The request cannot run as asked; the message says what to change (answered with 400)."""


class RunError(RuntimeError):
    """A run failed after it started (target errors, a dead worker): answered with 500 and the reason."""
