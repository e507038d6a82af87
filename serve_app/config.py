"""Service settings: the typed `args` of the Serve application (configs/serve.yaml) and their defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class CodeSandbox(BaseModel):
    """evalscope's sandbox for benchmarks that run the model's code (its TaskConfig `sandbox`, always enabled)."""

    model_config = ConfigDict(extra="forbid")

    engine: str = Field("docker", description="ms-enclave engine: docker or volcengine.")
    manager_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments of the ms-enclave manager (e.g. base_url of a remote one, volcengine credentials).",
    )
    default_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Sandbox settings merged over each benchmark's own (image, memory_limit, network_enabled, ...).",
    )
    pool_size: int | None = Field(None, ge=1, description="Warm sandboxes per dataset; default: eval_batch_size.")


class ServiceArgs(BaseModel):
    """Arguments of `build_app`; every limit and placement knob of the service lives here."""

    model_config = ConfigDict(extra="forbid")

    outputs_root: Path = Field(Path("outputs"), description="Every run writes under this directory.")
    datasets_root: Path = Field(
        Path("datasets"),
        description="Staged datasets: `<datasets_root>/<name>` is used for a dataset requested without a path.",
    )
    samples_root: Path | None = Field(
        Path("examples/datasets"),
        description="The shipped sample datasets, which requests may also name by path (local_path, dataset_path); "
        "null: only the datasets root.",
    )
    debug: bool = Field(False, description="Add tracebacks to every error response.")
    auth_tokens_env: str | None = Field(
        None,
        description="Environment variable holding the accepted bearer tokens, comma-separated entries "
        "`token[:principal[:admin]]`; unset (and no file): no auth, one principal.",
    )
    auth_tokens_file: Path | None = Field(
        None,
        description="File of accepted bearer tokens, one `token [principal [admin]]` per line; a token alone stands "
        "for the principal `default`. A principal sees and cancels its own jobs; an admin all of them.",
    )
    idempotency_secret_env: str | None = Field(
        None,
        description="Environment variable holding the secret that keys the stored request digests; unset: a "
        "secret generated once and kept owner-only under the outputs root.",
    )
    allowed_targets: list[str] = Field(
        default_factory=list,
        description="Hosts or CIDR networks that eval and perf may call (empty: any); others are refused with 400.",
    )

    code_sandbox: CodeSandbox | None = Field(
        None,
        description="Run benchmarks that execute the model's code (humaneval, mbpp, live_code_bench, ...) in this "
        "evalscope sandbox (needs evalscope[sandbox] and Docker on the workers); null: such benchmarks are refused, "
        "since evalscope would otherwise run the code in the worker.",
    )

    eval_task_num_cpus: float = Field(0.25, gt=0, description="CPUs reserved by each eval task (one per dataset).")
    perf_shard_num_cpus: float = Field(
        0.5, gt=0, description="CPUs reserved for each perf shard, in its test point's placement group."
    )
    shard_placement: Literal["SPREAD", "PACK"] = Field(
        "SPREAD",
        description="How a test point's shards are placed over the nodes: SPREAD (as many nodes as possible, so no "
        "node's CPUs or network bound the load) or PACK (as few as possible).",
    )
    placement_timeout_s: float = Field(
        300.0,
        gt=0,
        description="A test point whose shards the cluster cannot place together waits this long for CPUs (shown "
        "as `waiting for resources`; an autoscaling cluster adds nodes meanwhile), then its job fails.",
    )
    max_cluster_cpus: float | None = Field(
        None,
        gt=0,
        description="The most CPUs the cluster can have (an autoscaling cluster's maximum): a request for more "
        "shards than these hold is a 400; null: the CPUs the cluster has when the request arrives.",
    )
    max_parallel_per_shard: int = Field(
        256, ge=1, description="Automatic sharding gives no shard more concurrent requests than this."
    )
    max_rate_per_shard: float = Field(
        400.0, gt=0, description="Automatic sharding gives no shard a higher request rate (req/s) than this."
    )
    max_shards: int = Field(64, ge=1, description="Upper bound on shards of one perf test.")
    shard_start_delay_s: float = Field(
        0.2,
        ge=0,
        description="Shards are told to start this long after all of them are ready (the barrier): it must cover "
        "the start call reaching every shard (1-2 ms on one 2-core machine; leave room for a cluster's network).",
    )
    warm_workers: int = Field(
        2,
        ge=0,
        description="Perf shards, and as many eval workers, kept started with evalscope imported, so a job "
        "skips seconds of process start-up; each serves one job only and is replaced. Idle ones hold ~250 MB each, "
        "and the eval ones their eval_task_num_cpus (idle shards hold no CPU: a test point's placement group "
        "reserves it). 0: every worker starts with its job.",
    )

    max_running_jobs: int = Field(4, ge=1, description="Jobs that run at once; later ones wait in a queue.")
    max_queued_jobs: int = Field(64, ge=0, description="Jobs that may wait; beyond this a submission gets 429.")
    max_running_jobs_per_principal: int | None = Field(
        None, ge=1, description="Jobs of one principal that run at once (null: only max_running_jobs applies)."
    )
    max_queued_jobs_per_principal: int | None = Field(
        None,
        ge=0,
        description="Jobs of one principal that may wait; beyond this its submissions get 429 (null: no own limit).",
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with a 429.")
    progress_interval_s: float = Field(1.0, gt=0, description="How often a running job's progress is stored.")

    perf_live_metrics: bool = Field(
        True, description="Perf shards record every request in Prometheus metrics as it completes (~25 us each)."
    )
    max_metric_models: int = Field(
        100,
        ge=1,
        description="Distinct `model` label values the metrics export (each cut to 64 characters); models beyond "
        "these are exported as `other`, so callers cannot grow Prometheus without bound.",
    )

    max_number: int = Field(1_000_000, ge=1, description="Largest `number` a perf request may ask for.")
    max_parallel: int = Field(100_000, ge=1, description="Largest `parallel` a perf request may ask for.")
    max_rate: float = Field(100_000.0, gt=0, description="Largest `rate` (req/s) a perf request may ask for.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Probe timeout when a perf run first reaches the target.")
    request_timeout_s: float = Field(
        600.0,
        gt=0,
        description="A model request still unanswered after this long fails (perf: recorded as failed); also the "
        "largest generation_config.timeout an eval request may ask for.",
    )
    eval_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Default generation_config.timeout of an eval: seconds a model request may wait to connect or "
        "for its next bytes (evalscope streams, so a long answer that keeps coming never times out).",
    )
    eval_retries: int = Field(
        2, ge=1, description="Default generation_config.retries of an eval: attempts per model request."
    )
    eval_retry_interval_s: int = Field(
        1, ge=0, description="Default generation_config.retry_interval of an eval: seconds between attempts."
    )
    max_eval_retries: int = Field(5, ge=1, description="Largest generation_config.retries an eval may ask for.")
    max_limit: int | None = Field(
        None, ge=1, description="Largest eval `limit` (samples per subset); when set, an eval must give a limit."
    )
    max_eval_batch_size: int = Field(256, ge=1, description="Largest eval_batch_size an eval may ask for.")
    max_eval_repeats: int = Field(
        16, ge=1, description="Largest eval `repeats` (each sample is asked this many times, for pass@k metrics)."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body; beyond it a 413.")
