"""The durable job store: one SQLite file under the outputs root, written only by the process that owns it.

Plain stdlib so the owning process (a Ray actor) stays light and a server database can replace it behind `JobStore`.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from serve_app.compare.summary import job_summary
from serve_app.errors import storage_error
from serve_app.principals import DEFAULT_PRINCIPAL  # also the 'default' of the owner column

JOB_KINDS = ("eval", "perf")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
UNFINISHED = ("queued", "running")

# The fields `update` may change; identity, request and idempotency data are fixed at creation.
UPDATABLE = frozenset({"status", "started_at", "finished_at", "progress", "result", "error"})
_JSON_COLUMNS = frozenset({"request", "progress", "result"})


@dataclass
class JobRecord:
    id: str  # "job-" + 12 hex chars, made by the store
    kind: str  # one of JOB_KINDS
    status: str  # one of STATUSES
    model: str  # the model under test
    request: dict  # the request body, secrets already redacted by the caller
    output_dir: str
    created_at: float  # unix seconds
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict = field(default_factory=dict)  # e.g. {"done": 3, "total": 10, "percent": 30.0}
    result: dict | None = None  # the synchronous response body once succeeded
    error: str | None = None
    idempotency_key: str | None = None
    body_digest: str | None = None  # keyed hash of the canonical body: tells a retried submit from another one
    owner: str = DEFAULT_PRINCIPAL  # the principal that submitted it: the one (besides admins) who sees it


@dataclass(frozen=True)
class JobSummary:
    """A succeeded job in a model's history: its identity and summary (scores or key perf metrics), no result."""

    id: str
    kind: str
    model: str
    owner: str
    created_at: float
    finished_at: float | None
    summary: dict


@dataclass(frozen=True)
class LatestScore:
    model: str
    dataset: str
    score: float | None
    job_id: str
    finished_at: float


class DuplicateKey(Exception):
    """A job with this idempotency key exists; the caller decides between "same job" and a conflict."""

    def __init__(self, existing: JobRecord) -> None:
        super().__init__(f"idempotency key already used by {existing.id}")
        self.existing = existing


class JobStore(Protocol):
    """The small interface the service uses, so a server database can replace SQLite later."""

    def create(
        self,
        *,
        kind: str,
        model: str,
        request: dict,
        output_dir: str,
        idempotency_key: str | None = None,
        body_digest: str | None = None,
        owner: str = DEFAULT_PRINCIPAL,
        progress: dict | None = None,
    ) -> JobRecord: ...

    def get(self, job_id: str) -> JobRecord | None: ...

    def find_by_idempotency_key(self, owner: str, key: str) -> JobRecord | None: ...

    def update(self, job_id: str, **fields: Any) -> JobRecord: ...

    def list(
        self,
        *,
        kind: str | None = None,
        status: str | None = None,
        model: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[builtins.list[JobRecord], int]: ...

    def count(self, *, status: str) -> int: ...

    def interrupt_unfinished(self, message: str, keep: Iterable[str] = ()) -> builtins.list[str]: ...

    def latest_scores(self, *, owner: str | None = None, models: Iterable[str] = (),
                      datasets: Iterable[str] = ()) -> builtins.list[LatestScore]: ...

    def history(self, *, model: str, kind: str | None = None, owner: str | None = None, limit: int = 50,
                offset: int = 0) -> tuple[builtins.list[JobSummary], int]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    output_dir TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    idempotency_key TEXT,
    body_digest TEXT,
    owner TEXT NOT NULL DEFAULT 'default'
);
CREATE INDEX IF NOT EXISTS jobs_kind ON jobs (kind);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_model ON jobs (model);
CREATE INDEX IF NOT EXISTS jobs_created_at ON jobs (created_at);
"""
# Run after the columns exist (a store from before owners gains the column first). Idempotency keys are per
# principal; NULL keys never collide in SQLite, so jobs without a key are unconstrained.
_OWNER_INDEXES = """
DROP INDEX IF EXISTS jobs_idempotency_key;
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_owner_idempotency_key ON jobs (owner, idempotency_key);
"""
# Succeeded jobs, denormalised when they succeed: a model's history reads a few numbers per job (not its result,
# which would mean walking each row's overflow pages), and the leaderboard each model's newest score per dataset.
_HISTORY_TABLES = """
CREATE TABLE IF NOT EXISTS summaries (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS summaries_model_finished ON summaries (model, finished_at);
CREATE TABLE IF NOT EXISTS scores (
    job_id TEXT NOT NULL,
    model TEXT NOT NULL,
    owner TEXT NOT NULL,
    dataset TEXT NOT NULL,
    score REAL,
    finished_at REAL,
    PRIMARY KEY (job_id, dataset)
);
CREATE INDEX IF NOT EXISTS scores_newest ON scores (model, dataset, finished_at);
"""

# Column order follows the dataclass, so a new field needs only a schema column.
_FIELDS = tuple(f.name for f in dataclasses.fields(JobRecord))
_COLUMNS = ", ".join(_FIELDS)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _record(row: sqlite3.Row) -> JobRecord:
    data = {key: row[key] for key in row.keys()}
    for column in _JSON_COLUMNS:
        if data[column] is not None:
            data[column] = json.loads(data[column])
    return JobRecord(**data)


class SqliteJobStore:
    """`JobStore` on one SQLite file; safe to call from several threads of the owning process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        with self._writing():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit: every statement is its own transaction, and the lock serialises them across threads.
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(_SCHEMA)
            columns = {row["name"] for row in self._conn.execute("PRAGMA table_info(jobs)")}
            if "owner" not in columns:  # a store written before jobs had owners: they belong to the default one
                self._conn.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT 'default'")
            self._conn.executescript(_OWNER_INDEXES)
            tables = {row["name"] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            self._conn.executescript(_HISTORY_TABLES)
            if "summaries" not in tables:  # a store from before them: its succeeded jobs join them now
                for record in self._all("status = 'succeeded' AND result IS NOT NULL"):
                    self._summarise(record)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(
        self,
        *,
        kind: str,
        model: str,
        request: dict,
        output_dir: str,
        idempotency_key: str | None = None,
        body_digest: str | None = None,
        owner: str = DEFAULT_PRINCIPAL,
        progress: dict | None = None,
    ) -> JobRecord:
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}; expected one of {JOB_KINDS}")
        record = JobRecord(
            id=_new_id(),
            kind=kind,
            status="queued",
            model=model,
            request=request,
            output_dir=str(output_dir),
            created_at=time.time(),
            idempotency_key=idempotency_key,
            body_digest=body_digest,
            owner=owner,
            progress=progress or {},
        )
        with self._writing():
            try:
                self._insert(record)
            except sqlite3.IntegrityError:
                # The UNIQUE index decides, so two concurrent submits with one key cannot both win.
                existing = (
                    self._one("owner = ? AND idempotency_key = ?", owner, idempotency_key)
                    if idempotency_key is not None
                    else None
                )
                if existing is not None:
                    raise DuplicateKey(existing) from None
                record.id = _new_id()  # an id collision: astronomically rare, one retry is enough
                self._insert(record)
            # Read back, so the caller sees exactly what `get` will return (JSON turns tuples into lists...).
            stored = self._one("id = ?", record.id)
        assert stored is not None
        return stored

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._one("id = ?", job_id)

    def find_by_idempotency_key(self, owner: str, key: str) -> JobRecord | None:
        with self._lock:
            return self._one("owner = ? AND idempotency_key = ?", owner, key)

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; updatable fields are {sorted(UPDATABLE)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status {fields['status']!r}; expected one of {STATUSES}")
        if "progress" in fields and fields["progress"] is None:
            fields["progress"] = {}  # progress is never NULL, so readers can always index it
        values = [_dump(v) if k in _JSON_COLUMNS else v for k, v in fields.items()]
        with self._writing():
            if fields:
                assignments = ", ".join(f"{name} = ?" for name in fields)
                self._conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values, job_id))
            record = self._one("id = ?", job_id)
            if record is not None and fields.get("status") == "succeeded" and record.result is not None:
                self._summarise(record)
        if record is None:
            raise KeyError(job_id)
        return record

    def list(
        self,
        *,
        kind: str | None = None,
        status: str | None = None,
        model: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[builtins.list[JobRecord], int]:
        filters = {"kind": kind, "status": status, "model": model, "owner": owner}
        used = {name: value for name, value in filters.items() if value is not None}
        where = " AND ".join(f"{name} = ?" for name in used) or "1"
        params = tuple(used.values())
        with self._lock:
            total = self._conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}", params).fetchone()[0]
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        return [_record(row) for row in rows], total

    def count(self, *, status: str) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0]

    def interrupt_unfinished(self, message: str, keep: Iterable[str] = ()) -> builtins.list[str]:
        # A restarted job manager cannot resume its predecessor's runs, so their jobs end as "interrupted"; those in
        # `keep` were handed over to it or are still run by a retiring predecessor.
        keep = builtins.list(keep)
        with self._writing():
            rows = self._conn.execute(
                "UPDATE jobs SET status = 'interrupted', error = ?, finished_at = ?"
                f" WHERE status IN (?, ?) AND id NOT IN ({', '.join('?' for _ in keep)})"
                " RETURNING id, created_at",
                (message, time.time(), *UNFINISHED, *keep),
            ).fetchall()
        return [row["id"] for row in sorted(rows, key=lambda row: (row["created_at"], row["id"]))]

    def latest_scores(self, *, owner: str | None = None, models: Iterable[str] = (),
                      datasets: Iterable[str] = ()) -> builtins.list[LatestScore]:
        """The score of the newest succeeded eval of each model on each dataset (of `owner`'s jobs, if given)."""
        conditions, params = [], []
        for column, values in (("owner", [owner] if owner is not None else []), ("model", builtins.list(models)),
                               ("dataset", builtins.list(datasets))):
            if values:
                conditions.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params += values
        where = " AND ".join(conditions) or "1"
        with self._lock:
            # SQLite takes a bare column's value from the row that MAX() picked.
            rows = self._conn.execute(
                f"SELECT model, dataset, score, job_id, MAX(finished_at) FROM scores WHERE {where}"
                " GROUP BY model, dataset ORDER BY dataset, score DESC, model", params).fetchall()
        return [LatestScore(*row) for row in rows]

    def history(self, *, model: str, kind: str | None = None, owner: str | None = None, limit: int = 50,
                offset: int = 0) -> tuple[builtins.list[JobSummary], int]:
        """The model's succeeded jobs, newest first, with their summaries; and how many there are."""
        conditions, params = ["model = ?"], [model]
        for column, value in (("kind", kind), ("owner", owner)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        where = " AND ".join(conditions)
        with self._lock:
            total = self._conn.execute(f"SELECT COUNT(*) FROM summaries WHERE {where}", params).fetchone()[0]
            rows = self._conn.execute(
                f"SELECT job_id, kind, model, owner, created_at, finished_at, summary FROM summaries WHERE {where}"
                " ORDER BY finished_at DESC, job_id DESC LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
        return [JobSummary(*row[:-1], summary=json.loads(row["summary"])) for row in rows], total

    def _summarise(self, record: JobRecord) -> None:
        """A succeeded job joins its model's history and, an eval, the scores the leaderboard reads."""
        summary = job_summary(record.kind, record.result)
        self._conn.execute("INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (record.id, record.kind, record.model, record.owner, record.created_at,
                            record.finished_at, _dump(summary)))
        self._conn.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                               [(record.id, record.model, record.owner, dataset, score, record.finished_at)
                                for dataset, score in summary.get("scores", {}).items()])

    @contextlib.contextmanager
    def _writing(self):
        """Hold the lock for a write; a full or unwritable disk becomes a StorageError that says so."""
        try:
            with self._lock:
                yield
        except (sqlite3.OperationalError, OSError) as exc:
            raise storage_error(f"the job store {self.path}", exc) from exc

    def _insert(self, record: JobRecord) -> None:
        values = [getattr(record, name) for name in _FIELDS]
        values = [_dump(v) if name in _JSON_COLUMNS else v for name, v in zip(_FIELDS, values, strict=True)]
        placeholders = ", ".join("?" for _ in _FIELDS)
        self._conn.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({placeholders})", values)

    def _all(self, where: str, *params: Any) -> builtins.list[JobRecord]:
        return [_record(row) for row in self._conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where}", params)]

    def _one(self, where: str, *params: Any) -> JobRecord | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where}", params).fetchone()
        return None if row is None else _record(row)


def _new_id() -> str:
    return "job-" + secrets.token_hex(6)
