"""Every request and response body of the HTTP API, defined once (server, client and OpenAPI docs share them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from serve_app.principals import DEFAULT_PRINCIPAL
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

# Long enough for any real model id ("org/name-variant"), short enough to fit a file name in evalscope's layout.
MODEL_NAME_MAX_CHARS = 128

# evalscope's perf API plugins that talk to a remote endpoint (its `local*` plugins start a model in-process).
PERF_APIS = ("openai", "dashscope", "anthropic", "gemini", "openai_responses", "openai_embedding", "openai_rerank")


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://host:8000/v1")
    return url


EndpointUrl = Annotated[
    str, AfterValidator(_http_url), WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://[^/?#]+"})
]


class _Request(BaseModel):
    # Unknown fields are rejected so a typo ("paralel") is a 400, not a silently ignored option; JSON numbers too
    # large for a float (1e400) read as infinity and are refused too.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GenerationConfig(_Request):
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")
    max_tokens: int = Field(2048, gt=0, description="Most tokens the model may generate per sample.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int | None = Field(None, gt=0, description="Top-k sampling.")
    timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds a model request may wait to connect or for its next bytes; default: the service's "
        "eval_timeout_s.",
    )
    retries: int | None = Field(
        None, ge=1, description="Attempts per model request (1: no retry); default: the service's eval_retries."
    )
    retry_interval: int | None = Field(
        None, ge=0, le=300, description="Seconds between attempts; default: the service's eval_retry_interval_s."
    )


class EvalRequest(_Request):
    """Score a model behind an OpenAI-compatible endpoint on one or more benchmarks."""

    model: str = Field(min_length=1, max_length=MODEL_NAME_MAX_CHARS, description="Model name sent to the endpoint.")
    datasets: list[str] = Field(min_length=1, description="evalscope benchmark names, e.g. gsm8k, iquiz, ceval.")
    api_url: EndpointUrl = Field(
        description="OpenAI-compatible base URL (http://host:port/v1); a URL ending in /chat/completions works too.",
    )
    api_key: SecretStr = Field(SecretStr("EMPTY"), description="Key for the endpoint; never echoed or stored.")
    limit: int | float | None = Field(
        None,
        description="Samples per subset: an integer > 0, or a fraction in (0, 1] of each subset (1.0: all of it), as "
        "evalscope reads it.",
    )
    eval_batch_size: int = Field(1, ge=1, description="Concurrent requests per dataset.")
    generation_config: GenerationConfig = Field(default_factory=GenerationConfig)
    work_dir: str | None = Field(
        None,
        max_length=1024,
        description="Where under the service's outputs root the job's own new directory is made (relative to the "
        "root); default: eval/.",
    )
    debug: bool = Field(False, description="Verbose evalscope logs and tracebacks in error responses.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Random seed (numpy's range).")
    dataset_args: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="evalscope's per-dataset options, e.g. {'gsm8k': {'local_path': 'gsm8k', 'few_shot_num': 0}}: "
        "local_path, subset_list, eval_split, train_split, few_shot_num, few_shot_random, shuffle, shuffle_choices, "
        "system_prompt and prompt templates, metric_list, filters, review_timeout, max_image_bytes, extra_params "
        "(others: 400). Paths, including path extra_params, resolve against the service's datasets root and must "
        "stay inside it or the samples root.",
    )

    @field_validator("datasets")
    @classmethod
    def _distinct_names(cls, datasets: list[str]) -> list[str]:
        if len(set(datasets)) != len(datasets):
            raise ValueError("datasets lists a name twice")
        return datasets

    @field_validator("limit")
    @classmethod
    def _positive_limit(cls, limit: int | float | None) -> int | float | None:
        # evalscope's meaning: an integer counts samples, a float is a fraction of each subset (1.0: all of it).
        if isinstance(limit, float) and not 0 < limit <= 1:
            raise ValueError("a fractional limit must be in (0, 1]; a count of samples is an integer (e.g. 5, not 5.0)")
        if isinstance(limit, int) and limit <= 0:
            raise ValueError("limit must be > 0")
        return limit

    @model_validator(mode="after")
    def _dataset_args_name_requested_datasets(self) -> EvalRequest:
        extra = sorted(set(self.dataset_args) - set(self.datasets))
        if extra:
            raise ValueError(f"dataset_args names datasets that are not requested: {', '.join(extra)}")
        return self


class Slo(BaseModel):
    """Per-request limits in ms: a request is good when it succeeded and met every limit given (limits inclusive)."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(None, gt=0, description="Time to first token.")
    tpot_ms: float | None = Field(None, gt=0, description="Time per output token after the first.")
    itl_ms: float | None = Field(None, gt=0, description="Every gap between two tokens of the request.")
    e2e_ms: float | None = Field(None, gt=0, description="Whole request, from sending to the last token.")

    @model_validator(mode="after")
    def _some_limit(self) -> Slo:
        if not self.limits():
            raise ValueError("give at least one of ttft_ms, tpot_ms, itl_ms, e2e_ms")
        return self

    def limits(self) -> dict[str, float]:
        return {name: limit for name, limit in self.model_dump().items() if limit is not None}


class Search(BaseModel):
    """Find the highest load at which at least `min_goodput` of the requests meet the request's slo."""

    model_config = ConfigDict(extra="forbid")

    vary: Literal["parallel", "rate"] = Field(description="The load to search: concurrent requests, or req/s.")
    low: float = Field(gt=0, description="The lowest load to try (probed first).")
    high: float = Field(gt=0, description="The highest load to try.")
    min_goodput: float = Field(0.99, gt=0, le=1, description="The good fraction a load must reach to pass.")
    max_probes: int = Field(8, ge=2, le=32, description="Most test points the search runs.")
    probe_duration_s: float = Field(
        10.0, gt=0, le=3600, description="How long each probe sends (it also ends after `number` requests)."
    )

    @model_validator(mode="after")
    def _a_range_of_loads(self) -> Search:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.vary == "parallel" and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError("a parallel search's low and high are whole numbers of concurrent requests")
        return self


class PerfRequest(_Request):
    """Load-test an endpoint with evalscope's perf engine, spread over shards."""

    model: str = Field(
        min_length=1, max_length=MODEL_NAME_MAX_CHARS, description="Model name sent in every request."
    )
    url: EndpointUrl = Field(description="Complete endpoint URL, e.g. http://host:port/v1/chat/completions.")
    api: Literal[PERF_APIS] = Field("openai", description="evalscope API plugin that shapes requests and responses.")
    api_key: SecretStr | None = Field(None, description="Bearer key for the endpoint; never echoed or stored.")
    number: int | list[int] = Field(1000, description="Requests to send (a list sweeps, paired with parallel).")
    parallel: int | list[int] = Field(1, description="Concurrent requests (a list sweeps, paired with number).")
    # A float default (defaults skip validation): evalscope's Arguments declares float, and an int in the merged
    # point's arguments made every dump of them warn.
    rate: float = Field(-1.0, description="Open-loop arrival rate in requests/s (Poisson); -1 = as fast as allowed.")
    dataset: str = Field(
        "openqa",
        min_length=1,
        description="evalscope perf dataset plugin (openqa, line_by_line, custom, share_gpt_en, ...); one that would "
        "download from a hub reads dataset_path or a copy staged at <datasets root>/<dataset>; the random* ones "
        "(they need a tokenizer) are not supported yet.",
    )
    dataset_path: str | None = Field(
        None,
        description="Prompt file for the dataset plugin (for a hub dataset, also a directory of the hub's files), "
        "relative to the service's datasets root.",
    )
    max_tokens: int = Field(2048, gt=0, description="Most tokens per reply.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")
    stream: bool = Field(True, description="Stream replies (needed for TTFT and ITL).")
    debug: bool = Field(False, description="Verbose logs and tracebacks in error responses.")
    warmup: int = Field(
        0,
        ge=0,
        description="Requests sent first and left out of the results (they absorb connection set-up and the "
        "start-up burst; use at least `parallel`). Split over the shards like `number`.",
    )
    shards: int | None = Field(
        None, ge=1, description="Load-generator processes to split the test over; default: chosen from the load."
    )
    total_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds one request may take before it is recorded as failed; default: the service's "
        "request_timeout_s.",
    )
    duration_s: float | None = Field(
        None, gt=0, description="Each test point also ends after this long (in-flight requests finish), whichever "
        "of `number` and this comes first; its warm-up is not timed."
    )
    slo: Slo | None = Field(
        None,
        description="Per-request limits; each test point then reports its good requests, their fraction and the "
        "goodput (good requests per second of the test), overall and per shard.",
    )
    search: Search | None = Field(
        None,
        description="Search for the capacity within the slo instead of running the number/parallel sweep: each "
        "probe is a test point of `number` requests at most, `search.probe_duration_s` long at most.",
    )

    @field_validator("number", "parallel")
    @classmethod
    def _positive_counts(cls, value: int | list[int]) -> int | list[int]:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError("must not be an empty list")
        if any(v <= 0 for v in values):
            raise ValueError("must be > 0")
        return value

    @field_validator("rate")
    @classmethod
    def _rate_positive_or_unlimited(cls, rate: float) -> float:
        if rate != -1 and rate <= 0:
            raise ValueError("must be > 0, or -1 for unlimited")
        return rate

    @model_validator(mode="after")
    def _sweep_lists_pair_up(self) -> PerfRequest:
        if isinstance(self.number, list) and isinstance(self.parallel, list):
            if len(self.number) != len(self.parallel):
                raise ValueError("number and parallel lists must have the same length")
        return self

    @model_validator(mode="after")
    def _a_search_needs_an_slo_and_owns_its_load(self) -> PerfRequest:
        if self.search is None:
            return self
        if self.slo is None:
            raise ValueError("a search needs an slo: it looks for the highest load whose requests meet it")
        if isinstance(self.number, list) or isinstance(self.parallel, list):
            raise ValueError("a search chooses the load itself: number (the most requests per probe) and parallel "
                             "are single values")
        if self.search.vary == "rate" and self.rate != -1:
            raise ValueError("rate is what this search varies: leave it unset")
        if self.duration_s is not None:
            raise ValueError("a search's probes last search.probe_duration_s: leave duration_s unset")
        return self

    @model_validator(mode="after")
    def _token_limits_need_a_stream(self) -> PerfRequest:
        # Without a stream the reply arrives whole: there is no first token, no gap and no time per token to hold.
        token_limits = sorted({"ttft_ms", "tpot_ms", "itl_ms"} & set(self.slo.limits())) if self.slo else []
        if token_limits and not self.stream:
            raise ValueError(f"slo {', '.join(token_limits)} need stream: true (only e2e_ms holds without a stream)")
        return self

    def sweep(self) -> list[tuple[int, int]]:
        """The (parallel, number) test points, in order; a scalar pairs with every list entry."""
        parallels = self.parallel if isinstance(self.parallel, list) else None
        numbers = self.number if isinstance(self.number, list) else None
        length = len(parallels or numbers or [0])
        parallels = parallels or [self.parallel] * length
        numbers = numbers or [self.number] * length
        return list(zip(parallels, numbers))


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    service: str = "evalscope"
    timestamp: str = Field(description="ISO 8601 time of the answer.")


class DatasetSource(BaseModel):
    origin: Literal["request", "datasets_root", "hub"] = Field(
        description="request: the request's local_path; datasets_root: staged by the operator; hub: downloaded."
    )
    path: str | None = Field(None, description="Local directory the dataset was read from.")


class EvalResponse(BaseModel):
    status: Literal["success", "partial"] = Field(
        "success", description="partial: some datasets failed (in `failures`); the job then ends failed."
    )
    message: str = "Evaluation completed"
    result: dict[str, Any] = Field(description="evalscope's report for each dataset that scored, as JSON.")
    scores: dict[str, float | None] = Field(description="Primary score of each dataset (None if it has none).")
    failures: dict[str, str] = Field(default_factory=dict, description="Why each dataset that did not score failed.")
    dataset_sources: dict[str, DatasetSource] = Field(description="Where each dataset was read from.")
    output_dir: str = Field(description="Directory holding predictions, reviews, reports and logs.")


class Goodput(BaseModel):
    good: int = Field(description="Requests that succeeded and met every limit of the slo.")
    good_fraction: float = Field(description="good / every request of the point (failed ones included).")
    goodput_req_per_s: float = Field(description="good / the point's Test Duration (s), the span over all shards.")
    slo: Slo


class ShardSummary(BaseModel):
    shard: int
    parallel: int
    number: int
    rate: float
    requests: int = Field(description="Requests this shard completed (succeeded or failed).")
    succeeded: int
    req_per_s: float = Field(description="Completed requests per second over the shard's own span.")
    cpu_ms_per_request: float = Field(
        description="Load-generator CPU per request; near 1000 / req_per_s means the shard was CPU-bound."
    )
    node: str = Field(description="Ray node the shard ran on.")
    good: int | None = Field(None, description="Requests of this shard that met the request's slo (with an slo).")
    worker: str = Field("", description="Name of the Ray actor (one process, used for this shard only) it ran in.")
    worker_started_at: float = Field(
        0.0, description="Unix time that process was started: before the job when it was a warm worker."
    )


class PerfPointResult(BaseModel):
    metrics: dict[str, Any] = Field(description="evalscope's benchmark_summary.json for the whole test point.")
    percentiles: list[dict[str, Any]] = Field(description="evalscope's benchmark_percentile.json rows.")
    shards: list[ShardSummary] = Field(description="How the test point was split and what each shard did.")
    goodput: Goodput | None = Field(None, description="With an slo: how many requests met it, over all shards.")


class SearchProbe(BaseModel):
    point: str = Field(description="The probe's key in `results`.")
    load: float = Field(description="Concurrent requests or req/s, as the search varies.")
    passed: bool = Field(description="Its good fraction reached the search's min_goodput.")
    good_fraction: float
    goodput_req_per_s: float
    achieved_req_per_s: float = Field(description="Requests completed per second of the probe (evalscope's).")


class SearchResult(BaseModel):
    vary: Literal["parallel", "rate"]
    max_passing: float | None = Field(description="The highest load that passed: the capacity found.")
    min_failing: float | None = Field(description="The lowest load that failed, if any did.")
    probes: list[SearchProbe] = Field(description="In the order they ran.")
    verdict: str = Field(description="The outcome in one line.")


class PerfResponse(BaseModel):
    status: Literal["success"] = "success"
    message: str = "Performance test completed"
    output_dir: str
    results: dict[str, PerfPointResult] = Field(
        description="Keyed parallel_<p>_number_<n> like evalscope; a point repeated in a sweep gets _2, _3, ...; "
        "a search's probes are keyed parallel_<p>_number_<n> or rate_<r>_number_<n>, in the order they ran"
    )
    search: SearchResult | None = Field(None, description="With a search: the capacity found, and every probe.")


JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]


JobPhase = Literal["queued", "waiting for resources", "preparing", "running", "reporting", "done"]


class JobProgress(BaseModel):
    phase: JobPhase | None = Field(
        None,
        description="queued; waiting for resources (perf: a test point waits, up to placement_timeout_s, for the "
        "CPUs of all its shards at once); preparing (workers starting, datasets loading, request bodies being built); "
        "running; reporting (merging results, writing reports); done.",
    )
    done: int = Field(0, description="Samples (eval) or requests (perf) finished.")
    total: int = Field(0, description="Samples or requests planned (eval learns its total once datasets load).")
    percent: float = 0.0
    req_per_s: float | None = Field(None, description="Completions per second since the previous update.")


class JobView(BaseModel):
    job_id: str
    kind: Literal["eval", "perf"]
    status: JobStatus
    model: str
    owner: str = Field(DEFAULT_PRINCIPAL, description="The principal that submitted the job (auth off: default).")
    created_at: str = Field(description="ISO 8601.")
    started_at: str | None = None
    finished_at: str | None = None
    progress: JobProgress
    request: dict[str, Any] = Field(description="The submitted request, secrets masked.")
    result: dict[str, Any] | None = Field(
        None,
        description="Once succeeded: the synchronous response body; for an eval that failed on some datasets only, "
        "the scores of the others (status partial) beside the error.",
    )
    error: str | None = None
    output_dir: str
    links: dict[str, str] = Field(description="Where to follow the job: self, events, log, report, artifacts.")


class JobList(BaseModel):
    jobs: list[JobView]
    total: int = Field(description="Jobs matching the filters, over all pages.")
    limit: int
    offset: int


class JobLog(BaseModel):
    job_id: str
    offset: int
    lines: list[str]
    next_offset: int
    total: int = Field(description="Lines in the log so far.")


class ErrorResponse(BaseModel):
    status: Literal["error"] = "error"
    message: str = Field(description="What went wrong, in words a user can act on.")
    traceback: str | None = Field(None, description="Only when the request or the service runs in debug mode.")
