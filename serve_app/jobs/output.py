"""What a job's worker process prints goes into the job's own log, not the service log.

Ray forwards every worker's stdout and stderr to the driver, whose output is the service log (`serve run`'s), so
evalscope's task config dumps, progress bars and result tables from every dataset and shard buried the service's
own lines. A process that does one job's work (an eval dataset, a perf shard, a report) calls `print_to_job_log`
first: from then on its stdout, stderr, Python logging and warnings are appended to the job's log, which
GET /api/v1/jobs/<id>/log serves. Output written below Python (by native libraries) still reaches the service log.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from serve_app.paths import JOB_LOG

# Each process's share of the job's log: a run's story is a few hundred lines; a debug run logging every request
# of a large test must not fill the volume.
MAX_BYTES_PER_PROCESS = 512 * 1024
_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # colours and cursor moves
# A progress bar as tqdm draws it, ending in its meter: "[00:07<00:00, 3.64s/it]" or "[00:00, 1594.87 examples/s]".
# In a log its redraws are noise: evalscope logs each bar's progress as a line of its own, every 30 s and at the end.
_PROGRESS_BAR = re.compile(r"\[\d+:\d\d(:\d\d)?(<[^,\]]*)?, [^\]]*\]$")
_MASK = "***"
_MIN_SECRET_CHARS = 8  # shorter "keys" (evalscope's placeholder EMPTY) would mask ordinary words


def secrets_to_mask(secrets: Iterable[str | None]) -> list[str]:
    """The secrets worth masking in what a job prints or answers (None: unset)."""
    return [secret for secret in secrets if secret and len(secret) >= _MIN_SECRET_CHARS]


class HeldOutput(io.StringIO):
    """What a worker process printed before it learned its job (importing evalscope), kept for that job's log."""


def hold_output() -> None:
    """Keep what this process prints from now until `print_to_job_log` (a worker started before its job): it goes
    to the log of the job the process then works for, never to the service log."""
    sys.stdout = sys.stderr = HeldOutput()


def print_to_job_log(output_dir: str | Path, source: str, secrets: Iterable[str | None] = ()) -> None:
    """Send this process's output, from now until it exits, to the log of the job that runs in `output_dir`.

    Only for processes that work for one job and then end (a job's own worker actors). Called again (the same
    job's next step in the same process), later lines carry the new `source` and still mask the earlier step's
    secrets, which the process still holds. Each line is tagged `[source]`; `secrets` (None: unset) are masked.
    Logging handlers write to the stream that was sys.stderr when they were made: those made since `hold_output`
    (evalscope's, on import) or since the last call follow to the job's log; those made before (Ray's own, about
    the worker) stay with the service log.
    """
    Path(output_dir).mkdir(parents=True, exist_ok=True)  # a run started without the job manager has no log yet
    previous = sys.stderr
    if isinstance(previous, JobLogStream):  # the process still holds the earlier step's secrets (a shard's api key)
        secrets = [*secrets, *previous.secrets]
    stream = JobLogStream(Path(output_dir) / JOB_LOG, source, secrets)
    sys.stdout = sys.stderr = stream
    if isinstance(previous, HeldOutput):
        stream.write(previous.getvalue())
    if isinstance(previous, (HeldOutput, JobLogStream)):
        _redirect_logging_handlers(previous, stream)


def _redirect_logging_handlers(old: io.TextIOBase, new: io.TextIOBase) -> None:
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


class JobLogStream(io.TextIOBase):
    """A text stream that appends whole lines to a job's log, shaped to be read there.

    Every line is tagged with its source, secrets masked and terminal colours dropped; progress bars are left out
    (what a carriage return redraws is collapsed first, as a terminal shows it); past `max_bytes` one line says
    that the rest is left out. Each line is one append, so the lines of processes writing at once never mix.
    """

    encoding = "utf-8"  # read by libraries that print to sys.stdout; the base class says None

    def __init__(
        self, path: Path, source: str, secrets: Iterable[str | None] = (), max_bytes: int = MAX_BYTES_PER_PROCESS
    ) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._prefix = f"[{source}] "
        self.secrets = secrets_to_mask(secrets)
        self._max_bytes = max_bytes
        self._room = max_bytes
        self._left_out = False
        self._pending = ""  # the line being written, until its newline
        self._lock = threading.Lock()  # an actor answers calls on more than one thread

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *lines, pending = (self._pending + text).split("\n")
            self._pending = _last_redraw(pending)  # a bar redrawn for hours without a newline stays one line long
            for line in lines:
                self._append(line)
        return len(text)

    def _append(self, line: str) -> None:
        line = _TERMINAL_ESCAPE.sub("", _last_redraw(line).rstrip("\r")).rstrip()
        if not line or self._left_out or _PROGRESS_BAR.search(line):
            return
        for secret in self.secrets:
            line = line.replace(secret, _MASK)
        data = f"{self._prefix}{line}\n".encode("utf-8", "replace")
        if len(data) > self._room:
            data = f"{self._prefix}(the rest is left out: over {self._max_bytes} bytes)\n".encode()
            self._left_out = True
        os.write(self._fd, data)
        self._room -= len(data)


def _last_redraw(text: str) -> str:
    """`text` from its last carriage return on, as a terminal shows it (a trailing one is kept: what follows
    overwrites the line)."""
    return text[text.rfind("\r", 0, len(text) - 1) + 1 :]
