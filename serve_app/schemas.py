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
    SerializationInfo,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)

# Long enough for any real model id ("org/name-variant"), short enough to fit a file name in evalscope's layout.
MODEL_NAME_MAX_CHARS = 128
MAX_JUDGE_MODELS = 8
JUDGE_CONTRACT_KEYS = ("system_prompt", "prompt_template", "score_mapping", "score_type")

# evalscope's perf API plugins that talk to a remote endpoint (its `local*` plugins start a model in-process).
PERF_APIS = ("openai", "dashscope", "anthropic", "gemini", "openai_responses", "openai_embedding", "openai_rerank")


SECRET_MASK = "**********"  # how pydantic shows a SecretStr
_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "cookie", "session", "password")


def is_credential_header(name: str) -> bool:
    """A header whose value is a credential: evalscope's own list (authorization, x-api-key, ...) and anything
    named like one."""
    return any(word in name.lower() for word in _CREDENTIAL_WORDS)


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. http://host:8000/v1")
    return url


EndpointUrl = Annotated[
    str, AfterValidator(_http_url), WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://[^/?#]+"})
]


# evalscope perf datasets whose requests carry their own arrival offsets (a replayed production trace).
TRACE_DATASETS = frozenset({"workload_trace"})
# The fields that schedule a perf point's arrivals: the rate, then what shapes them.
_SCHEDULE_FIELDS = ("rate", "open_loop", "arrival", "burstiness", "ramp_up_s", "stop_on_saturation")

class _Request(BaseModel):
    # Unknown fields are rejected so a typo ("paralel") is a 400, not a silently ignored option; JSON numbers too
    # large for a float (1e400) read as infinity and are refused too.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GenerationConfig(_Request):
    """The fields below are bounded by the service; any other field of evalscope's GenerateConfig (extra_body,
    stop_seqs, seed, n, presence_penalty, frequency_penalty, reasoning_effort, ...) is taken too, checked against
    evalscope's own model (400 naming the field otherwise). Not taken: batch_size (see eval_batch_size) and
    extra_headers (headers can carry credentials)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

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


class JudgeModel(_Request):
    """One judge model behind an OpenAI-compatible endpoint (evalscope's JudgeModelConfig)."""

    model_id: str = Field(min_length=1, max_length=MODEL_NAME_MAX_CHARS, description="Model name sent to the judge.")
    judge_id: str | None = Field(
        None, min_length=1, max_length=MODEL_NAME_MAX_CHARS, description="Names this judge in the reviews; needed "
        "when two judges share a model_id (default: model_id).",
    )
    api_url: EndpointUrl = Field(description="The judge's OpenAI-compatible base URL; allowed_targets applies.")
    api_key: SecretStr = Field(SecretStr("EMPTY"), description="Key for the judge; never echoed or stored.")
    generation_config: GenerationConfig = Field(
        default_factory=GenerationConfig, description="The judge's generation settings, as the eval's own."
    )


class JudgeContract(_Request):
    """How the judge is asked and how its verdict scores (evalscope's JudgeContractConfig)."""

    system_prompt: str | None = Field(None, max_length=20_000)
    prompt_template: str | None = Field(
        None, max_length=20_000, description="Placeholders {question}, {gold} and {pred}; default: evalscope's."
    )
    score_mapping: dict[str, float] | None = Field(
        None, description="Verdict labels and their scores; default {'A': 1.0, 'B': 0.0} (A correct, B incorrect)."
    )
    score_type: Literal["pattern", "numeric"] = Field(
        "pattern", description="pattern: a label against the reference answer; numeric: a 0-1 rating, no reference."
    )


class Judge(_Request):
    """LLM-as-judge scoring (evalscope's `judge`): which samples a judge scores, and which models judge them."""

    strategy: Literal["auto", "rule", "llm", "llm_recall"] = Field(
        "auto", description="auto: the benchmark's choice; rule: no judge; llm: the judge scores every sample; "
        "llm_recall: the judge rescores what the rules marked wrong.",
    )
    models: list[JudgeModel] = Field(
        default_factory=list, max_length=MAX_JUDGE_MODELS, description="The judges (required unless strategy is "
        "rule): their scores are aggregated.",
    )
    contract: JudgeContract = Field(default_factory=JudgeContract)
    repeats: int = Field(1, ge=1, le=8, description="Times each judge is asked per sample.")
    position_swap: Literal["auto", "on", "off"] = Field("auto", description="Pairwise benchmarks: ask again with the "
                                                        "answers swapped.")
    aggregation: Literal["mean", "median", "majority_vote"] = Field("mean", description="How the judges' scores "
                                                                    "combine.")
    min_valid_judges: int = Field(1, ge=1, description="Judges that must give a valid verdict for a sample to score.")

    @model_validator(mode="after")
    def _judges_for_the_strategy(self) -> Judge:
        # Without a model evalscope falls back to its default judge on a public API: never the intent here.
        if self.strategy != "rule" and not self.models:
            raise ValueError(f"strategy {self.strategy} needs at least one judge in models")
        names = [model.judge_id or model.model_id for model in self.models]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"two judges are named {twice[0]}: give each a distinct judge_id")
        if self.min_valid_judges > max(1, len(self.models)):
            raise ValueError(f"min_valid_judges {self.min_valid_judges} exceeds the {len(self.models)} judges given")
        return self


class EvalRequest(_Request):
    """Score a model behind an OpenAI-compatible endpoint on one or more benchmarks."""

    model: str = Field(min_length=1, max_length=MODEL_NAME_MAX_CHARS, description="Model name sent to the endpoint.")
    datasets: list[str] = Field(min_length=1, description="evalscope benchmark names, e.g. gsm8k, iquiz, ceval.")
    api_url: EndpointUrl = Field(
        description="OpenAI-compatible base URL (http://host:port/v1); a URL ending in /chat/completions works too.",
    )
    api_key: SecretStr = Field(SecretStr("EMPTY"), description="Key for the endpoint; never echoed or stored.")
    eval_type: Literal["openai_api", "openai_completions"] = Field(
        "openai_api", description="openai_api: a chat endpoint (/v1/chat/completions, evalscope's); "
        "openai_completions: a completions endpoint (/v1/completions: a base model without a chat template), each "
        "prompt the benchmark's messages joined by blank lines.",
    )
    limit: int | float | None = Field(
        None,
        description="Samples per subset: an integer > 0, or a fraction in (0, 1] of each subset (1.0: all of it), as "
        "evalscope reads it.",
    )
    eval_batch_size: int = Field(1, ge=1, description="Concurrent requests per dataset.")
    repeats: int = Field(
        1, ge=1, description="Times each sample is asked (evalscope's repeats: pass@k and mean-of-k metrics)."
    )
    ignore_errors: bool = Field(
        False, description="A sample whose request fails after its retries is scored as wrong instead of failing "
        "its dataset (evalscope's ignore_errors)."
    )
    resume_from: str | None = Field(
        None, pattern=r"^job-[0-9a-f]{12}$", description="An earlier eval job of the caller's that failed, was "
        "cancelled or was interrupted: its predictions are reused (evalscope's use_cache) and only the samples "
        "it lacks are asked. POST /api/v1/jobs/<id>/resume sets it, with that job's own request.",
    )
    generation_config: GenerationConfig = Field(default_factory=GenerationConfig)
    work_dir: str | None = Field(
        None,
        max_length=1024,
        description="Where under the service's outputs root the job's own new directory is made (relative to the "
        "root); default: eval/.",
    )
    debug: bool = Field(False, description="Verbose evalscope logs and tracebacks in error responses.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Random seed (numpy's range).")
    judge: Judge | None = Field(
        None, description="LLM-as-judge scoring: evalscope's `judge`. evalscope's older judge_strategy and "
        "judge_model_args are taken too (as evalscope reads them).",
    )
    dataset_args: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="evalscope's per-dataset options, e.g. {'gsm8k': {'local_path': 'gsm8k', 'few_shot_num': 0}}: "
        "local_path, subset_list, eval_split, train_split, few_shot_num, few_shot_random, shuffle, shuffle_choices, "
        "system_prompt and prompt templates, metric_list, filters, review_timeout, max_image_bytes, extra_params "
        "(others: 400). Paths, including path extra_params, resolve against the service's datasets root and must "
        "stay inside it or the samples root.",
    )

    def secret_values(self) -> list[str]:
        """What must never be stored or printed: the keys of the endpoint and of the judges."""
        return [self.api_key.get_secret_value(), *self.judge_api_keys()]

    def judge_api_keys(self) -> list[str]:
        return [model.api_key.get_secret_value() for model in self.judge.models] if self.judge else []

    @model_validator(mode="before")
    @classmethod
    def _judge_from_evalscope_legacy_keys(cls, data: Any) -> Any:
        """evalscope's deprecated judge_strategy and judge_model_args, folded into `judge` as evalscope folds them
        (TaskConfig._migrate_judge_keys): the prompt and verdict fields of judge_model_args are the contract's."""
        if not isinstance(data, dict) or not {"judge_strategy", "judge_model_args"} & set(data):
            return data
        if "judge" in data:
            raise ValueError("give either judge or evalscope's older judge_strategy / judge_model_args, not both")
        data = dict(data)
        model = data.pop("judge_model_args", None)
        judge = {"strategy": data.pop("judge_strategy", "auto"), "models": [], "contract": {}}
        if isinstance(model, dict):
            model = dict(model)
            judge["contract"] = {key: model.pop(key) for key in JUDGE_CONTRACT_KEYS if key in model}
            judge["models"] = [model] if model else []
        elif model is not None:
            judge["models"] = [model]  # not an object: its own error names it
        return {**data, "judge": judge}

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


class BenchmarkInfo(BaseModel):
    """An evalscope benchmark, as its metadata describes it, and whether this service runs it."""

    name: str = Field(description="The name `datasets` takes.")
    pretty_name: str
    category: str = Field(description="evalscope's category: llm, vlm, agent, ...")
    tags: list[str]
    subsets: list[str] = Field(description="Its subsets (dataset_args.<name>.subset_list picks some).")
    metrics: list[str]
    few_shot_num: int | None = Field(description="Examples in each prompt by default.")
    samples: int | None = Field(description="Samples in its evaluation split, as evalscope counted them.")
    staged: bool = Field(description="Staged under the service's datasets root: runs without a dataset hub.")
    refused: str | None = Field(description="Why this service will not run it (agent tools, code execution without "
                                "a sandbox); null when it will.")


class BenchmarkCatalogue(BaseModel):
    benchmarks: list[BenchmarkInfo]


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
    number: int | list[int] = Field(
        1000, description="Requests to send (a list sweeps, paired with a parallel or rate list).")
    parallel: int | list[int] = Field(
        1, description="Concurrent requests (a list sweeps, paired with number). With open_loop: a cap on what is in "
        "flight, only if given.")
    # A float default (defaults skip validation): evalscope's Arguments declares float, and an int in the merged
    # point's arguments made every dump of them warn.
    rate: float | list[float] = Field(
        -1.0, description="Arrival rate in requests/s, shaped by `arrival` and `ramp_up_s`; -1 = as fast as the "
        "parallel slots allow. A list sweeps, paired with number (not with a parallel list).")
    open_loop: bool = Field(
        False, description="Send arrivals on schedule whether or not earlier requests finished (evalscope's open "
        "loop); needs a rate; parallel then caps what is in flight only if given.")
    arrival: Literal["poisson", "constant", "gamma"] = Field(
        "poisson", description="How arrivals are spaced at `rate`: Poisson, evenly, or gamma with `burstiness`.")
    burstiness: float | None = Field(
        None, gt=0, description="gamma's shape (arrival: gamma): 1 is Poisson, below 1 burstier, above 1 steadier.")
    ramp_up_s: float | None = Field(
        None, gt=0, description="Raise the rate linearly from ~0 to `rate` over the first ramp_up_s seconds of each "
        "test point.")
    stop_on_saturation: bool = Field(
        False, description="End a test point early (the rest of its requests not sent) once the target is saturated: "
        "arrivals fall behind schedule or the requests in flight keep growing.")
    multi_turn: bool = Field(
        False, description="A multi-turn chat load (evalscope's multi_turn): each of `parallel` workers holds one "
        "conversation at a time and sends its turns one after the other, each with the history and the real "
        "replies so far; `number` counts conversations. Needs a conversation dataset (random_multi_turn, "
        "custom_multi_turn, share_gpt_*_multi_turn); every conversation runs on one shard.")
    min_turns: int | None = Field(None, ge=1, description="multi_turn: fewest user turns of a random_multi_turn "
                                  "conversation (default 1).")
    max_turns: int | None = Field(None, ge=1, description="multi_turn: most user turns of a conversation (required "
                                  "by random_multi_turn; longer conversations of a file are cut).")
    dataset: str = Field(
        "openqa",
        min_length=1,
        description="evalscope perf dataset plugin (openqa, line_by_line, custom, share_gpt_en, random, ...); one "
        "that would download from a hub reads dataset_path or a copy staged at <datasets root>/<dataset>; the "
        "random* ones generate prompts with the tokenizer at tokenizer_path.",
    )
    dataset_path: str | None = Field(
        None,
        description="Prompt file for the dataset plugin (for a hub dataset, also a directory of the hub's files), "
        "relative to the service's datasets root.",
    )
    tokenizer_path: str | None = Field(
        None,
        max_length=1024,
        description="A tokenizer directory (Hugging Face layout: tokenizer.json, tokenizer_config.json) under the "
        "datasets root: the random* datasets build prompts of a chosen token length with it.",
    )
    min_prompt_length: int | None = Field(None, ge=0, description="Shortest prompt (tokens with a tokenizer).")
    max_prompt_length: int | None = Field(None, gt=0, description="Longest prompt (tokens with a tokenizer).")
    prefix_length: int | None = Field(None, ge=0, description="Tokens of a prefix shared by every random prompt.")
    apply_chat_template: bool | None = Field(
        None, description="Wrap random prompts in the tokenizer's chat template; default: for chat endpoints."
    )
    max_tokens: int = Field(2048, gt=0, description="Most tokens per reply.")
    min_tokens: int | None = Field(None, ge=0, description="Fewest tokens per reply (sent as min_tokens).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")
    stream: bool = Field(True, description="Stream replies (needed for TTFT and ITL).")
    extra_args: dict[str, Any] | None = Field(
        None, description="Extra fields of every request body, e.g. {\"ignore_eos\": true}."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers of every request. Values of credential-like headers (a name with auth, key, "
        "token, secret, cookie, session or password in it) are never echoed or stored, like api_key.",
    )
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1 - 1024, description="Seed of the prompt and arrival draws (shard i uses seed + i); "
        "default 42."
    )
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
    connect_timeout: float | None = Field(
        None, gt=0, description="Seconds to connect; default: the service's connect_timeout_s."
    )
    read_timeout: float | None = Field(
        None, gt=0, description="Seconds a streaming reply may pause between chunks; default: total_timeout."
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
    def _rate_positive_or_unlimited(cls, rate: float | list[float]) -> float | list[float]:
        if isinstance(rate, list):
            if not rate:
                raise ValueError("must not be an empty list")
            if any(r <= 0 for r in rate):
                raise ValueError("every rate of a sweep must be > 0")
        elif rate != -1 and rate <= 0:
            raise ValueError("must be > 0, or -1 for unlimited")
        return rate

    def rates(self) -> list[float]:
        return self.rate if isinstance(self.rate, list) else [self.rate]

    @field_serializer("headers")
    def _mask_credentials(self, headers: dict[str, str], info: SerializationInfo) -> dict[str, str]:
        if (info.context or {}).get("reveal_secrets"):  # the client sending the request, and no one else
            return headers
        return {name: SECRET_MASK if is_credential_header(name) else value for name, value in headers.items()}

    def secret_values(self) -> list[str]:
        """What must never be stored or printed: the key and the credential headers' values."""
        return [value for value in (self.api_key.get_secret_value() if self.api_key else None,
                                    *(v for name, v in self.headers.items() if is_credential_header(name))) if value]

    @model_validator(mode="after")
    def _prompt_lengths_in_order(self) -> PerfRequest:
        if (self.min_prompt_length is not None and self.max_prompt_length is not None
                and self.min_prompt_length > self.max_prompt_length):
            raise ValueError(f"min_prompt_length ({self.min_prompt_length}) is over max_prompt_length "
                             f"({self.max_prompt_length})")
        return self

    @model_validator(mode="after")
    def _sweep_lists_pair_up(self) -> PerfRequest:
        if isinstance(self.rate, list) and isinstance(self.parallel, list):
            raise ValueError("sweep either parallel or rate, not both: one of them must be a single value")
        if self.open_loop and isinstance(self.parallel, list):
            raise ValueError("an open loop sweeps rate: parallel is one cap on what is in flight, not a list")
        swept = "parallel" if isinstance(self.parallel, list) else "rate" if isinstance(self.rate, list) else None
        if swept and isinstance(self.number, list) and len(self.number) != len(getattr(self, swept)):
            raise ValueError(f"number and {swept} lists must have the same length (got {len(self.number)} and "
                             f"{len(getattr(self, swept))})")
        return self

    @model_validator(mode="after")
    def _a_load_shape_needs_a_rate(self) -> PerfRequest:
        rate_search = self.search is not None and self.search.vary == "rate"
        if self.rate == -1 and not rate_search:
            shaped = self._scheduling(*_SCHEDULE_FIELDS[1:])  # what shapes the arrivals of a rate
            if shaped:
                raise ValueError(f"{', '.join(shaped)} shape arrivals at a rate: give a rate (req/s)")
        if self.burstiness is not None and self.arrival != "gamma":
            raise ValueError("burstiness is the shape of gamma arrivals: it needs arrival: gamma")
        if self.ramp_up_s is not None and self.duration_s is not None and self.ramp_up_s >= self.duration_s:
            raise ValueError(f"ramp_up_s ({self.ramp_up_s:g}) must be shorter than duration_s ({self.duration_s:g}): "
                             "the point would end before reaching its rate")
        return self

    def _scheduling(self, *names: str) -> list[str]:
        """Those of `names` the request sets to a value that schedules arrivals (not unset, off or the default)."""
        return [name for name in names
                if name in self.model_fields_set and getattr(self, name) not in (False, None, -1, -1.0, "poisson")]

    @model_validator(mode="after")
    def _a_trace_keeps_its_own_arrivals(self) -> PerfRequest:
        # evalscope's trace replay carries each request's arrival offset in its body; a schedule would replace them.
        if self.dataset in TRACE_DATASETS:
            paced = self._scheduling(*_SCHEDULE_FIELDS)
            if paced or (self.search is not None and self.search.vary == "rate"):
                raise ValueError(f"{', '.join(paced) or 'a rate search'} would replace the arrival times of the "
                                 f"{self.dataset} dataset with a schedule of the service's, and replaying them across "
                                 "shards is not supported yet: without a rate its requests are sent closed-loop, "
                                 "parallel at a time")
        return self

    @model_validator(mode="after")
    def _turns_belong_to_a_multi_turn_load(self) -> PerfRequest:
        turns = [name for name in ("min_turns", "max_turns") if getattr(self, name) is not None]
        if not self.multi_turn:
            if turns:
                raise ValueError(f"{', '.join(turns)} shape the conversations of a multi_turn load: set multi_turn")
            return self
        # A conversation's next turn waits for the reply to the last one: arrivals cannot be scheduled.
        paced = self._scheduling(*_SCHEDULE_FIELDS, "search")
        if paced:
            raise ValueError(f"{', '.join(paced)} schedule requests at a rate; a multi_turn load is paced by its "
                             "conversations (parallel of them at once)")
        if self.min_turns is not None and self.max_turns is not None and self.min_turns > self.max_turns:
            raise ValueError(f"min_turns ({self.min_turns}) is over max_turns ({self.max_turns})")
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
        if isinstance(self.rate, list):
            raise ValueError("a search chooses the load itself: rate is a single value")
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

    @property
    def sweeps_rate(self) -> bool:
        """Points are named and drawn by rate (evalscope's rate_<r>_number_<n>): a rate sweep, or an open loop."""
        return isinstance(self.rate, list) or self.open_loop

    @property
    def parallel_cap(self) -> int | None:
        """The single parallel of a point: in an open loop, a cap only when given."""
        if self.open_loop and "parallel" not in self.model_fields_set:
            return None
        return self.parallel if isinstance(self.parallel, int) else None

    def sweep(self) -> list[tuple[int | None, int, float]]:
        """The (parallel, number, rate) test points, in order; a scalar pairs with every list entry. parallel None:
        no cap on what is in flight (an open loop that does not give one)."""
        parallels = self.parallel if isinstance(self.parallel, list) else None
        rates = self.rate if isinstance(self.rate, list) else None
        numbers = self.number if isinstance(self.number, list) else None
        length = len(parallels or rates or numbers or [0])
        return list(zip(parallels or [self.parallel_cap] * length, numbers or [self.number] * length,
                        rates or [self.rate] * length))


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
    resumed_from: str | None = Field(None, description="The job whose predictions this one reused.")
    reused_predictions: dict[str, int] = Field(
        default_factory=dict, description="Predictions taken over from `resumed_from`, per dataset (not asked again)."
    )


class ResumeRequest(_Request):
    api_key: SecretStr = Field(SecretStr("EMPTY"), description="Key for the endpoint, given again: it was never "
                               "stored.")
    judge_api_keys: list[SecretStr] = Field(
        default_factory=list, max_length=MAX_JUDGE_MODELS, description="The keys of the eval's judges, in the "
        "order of its judge.models, given again (one each; \"EMPTY\" for a judge without a key).",
    )


class Goodput(BaseModel):
    good: int = Field(description="Requests that succeeded and met every limit of the slo.")
    good_fraction: float = Field(description="good / every request of the point (failed ones included).")
    goodput_req_per_s: float = Field(description="good / the point's Test Duration (s), the span over all shards.")
    slo: Slo


class ShardSummary(BaseModel):
    shard: int
    parallel: int | None = Field(description="Its cap on requests in flight; null: none (an open loop without one).")
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
    sent: int | None = Field(None, description="With a rate: measured requests that went out.")
    stopped: str | None = Field(None, description="Why it stopped sending early (stop_on_saturation), if it did.")
    conversations: int | None = Field(None, description="A multi_turn load: conversations this shard ran to their "
                                      "end (`requests` counts their turns).")


class PointSaturation(BaseModel):
    """Did the target keep up with the load? Judged over the merged send and completion times of every shard."""

    saturated: bool = Field(description="Arrivals went out under 95 % of the scheduled rate, or the requests in "
                                        "flight kept growing.")
    requested_req_per_s: float = Field(description="The schedule's rate over the requests that went out (with a "
                                                   "ramp, its average over the ramp too).")
    achieved_req_per_s: float = Field(description="The rate they went out at.")
    in_flight_start: float = Field(description="Mean requests in flight over the first fifth of the send window "
                                               "(from the first completion).")
    in_flight_end: float = Field(description="... and over its last fifth.")
    in_flight_trend_per_s: float = Field(description="Least-squares slope of the requests in flight.")
    reasons: list[str] = Field(description="Why it is saturated, in words; empty when it is not.")
    stopped_early: bool = Field(description="stop_on_saturation ended the point: the rest of its requests were not "
                                            "sent, those in flight were abandoned.")
    not_sent: int = Field(description="Measured requests of the point that never went out (stopped early, or "
                                      "duration_s ran out).")


class LoadSeries(BaseModel):
    """Each metric against the load, one entry per test point in load order: what the report draws."""

    load: Literal["parallel", "rate"] = Field(description="What the points vary.")
    loads: list[float] = Field(description="The load of each point (concurrent requests or req/s).")
    points: list[str] = Field(description="Each point's key in `results`.")
    metrics: dict[str, list[float | None]] = Field(
        description="Per metric, its value at each point: latency percentiles named as the gates name them (TTFT "
        "(ms)@50%, TPOT (ms)@90%, ITL (ms)@99%, Latency (s)@99%, ...), Req Throughput (req/s), with a rate "
        "Requested (req/s) and Achieved (req/s) (arrivals), with an slo Goodput (req/s) and Good fraction.")


class PerfPointResult(BaseModel):
    metrics: dict[str, Any] = Field(description="evalscope's benchmark_summary.json for the whole test point.")
    percentiles: list[dict[str, Any]] = Field(description="evalscope's benchmark_percentile.json rows.")
    shards: list[ShardSummary] = Field(description="How the test point was split and what each shard did.")
    goodput: Goodput | None = Field(None, description="With an slo: how many requests met it, over all shards.")
    saturation: PointSaturation | None = Field(None, description="With a rate: whether the target kept up.")
    conversations: dict[str, Any] | None = Field(
        None, description="A multi_turn load's per-conversation metrics, evalscope's trace_summary.json: "
        "{n_traces, rows: [{metric (Latency, First-Turn TTFT, TTFAT, Decode TPS, Cache Hit Rate...), mean, min, "
        "p50, p90, p95, p99, max}]}.")
    workload_throughput: dict[str, Any] | None = Field(
        None, description="evalscope's workload_throughput.json: token throughput (total, new and cached prompt, "
        "completion tok/s) over the whole point, its last 30 s, and its steady state (the first 20 % of its wall "
        "time left out): {n_samples, wall_time_s, last_window_s, warmup_frac, rows: [{metric, overall, last_window, "
        "steady_state}]}; absent when no request succeeded.")


class SearchProbe(BaseModel):
    point: str = Field(description="The probe's key in `results`.")
    load: float = Field(description="Concurrent requests or req/s, as the search varies.")
    passed: bool = Field(description="Its good fraction reached the search's min_goodput.")
    good_fraction: float
    goodput_req_per_s: float
    achieved_req_per_s: float = Field(description="Requests completed per second of the probe (evalscope's).")
    saturated: bool = Field(False, description="The target did not keep up with the probe's rate (see the point's "
                                               "saturation): such a probe fails whatever its good fraction.")


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
    series: LoadSeries | None = Field(None, description="With two points or more: each metric against the load.")


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


Verdict = Literal["better", "worse", "no significant change", "within tolerance", "not comparable"]


class RequestDifference(BaseModel):
    field: str = Field(description="Dotted request field, e.g. limit or generation_config.temperature.")
    baseline: Any
    candidate: Any
    blocking: bool = Field(description="It changes what is measured (other samples, another load): the jobs are "
                                       "not comparable.")


class UnpairedSamples(BaseModel):
    baseline: int = Field(description="Samples scored in the baseline only.")
    candidate: int = Field(description="Samples scored in the candidate only.")
    baseline_ids: list[str] = Field(description="Their ids (the first few).")
    candidate_ids: list[str]


class ScoreComparison(BaseModel):
    dataset: str
    subset: str | None = Field(description="None: every subset of the dataset, pooled.")
    paired: int = Field(description="Samples scored in both jobs; the difference is over these.")
    baseline_score: float | None = Field(description="Mean per-sample score over the paired samples.")
    candidate_score: float | None
    difference: float | None = Field(description="candidate - baseline.")
    ci_low: float | None = Field(description="Paired bootstrap interval of the difference.")
    ci_high: float | None
    unpaired: UnpairedSamples
    verdict: Verdict = Field(description="better or worse when the interval excludes 0; not comparable without "
                                         "paired samples.")


class PerfComparison(BaseModel):
    point: str = Field(description="The test point, as keyed in both results.")
    metric: str = Field(description="evalscope's benchmark_summary key, or its percentile column.")
    percentile: str | None = Field(description="The percentile row (50%, 99%, ...); None: the summary metric.")
    baseline: float
    candidate: float
    difference: float = Field(description="candidate - baseline.")
    difference_pct: float | None = Field(description="difference / baseline in %; None when the baseline is 0.")
    worse_when: Literal["higher", "lower"] | None = Field(
        description="Which way is a regression (latency up, throughput down); None: neither (counts, sizes).")
    verdict: Verdict | None = Field(description="Against the tolerance; None for a metric with no direction.")


class Comparison(BaseModel):
    kind: Literal["eval", "perf"]
    baseline: str = Field(description="Job id.")
    candidate: str = Field(description="Job id.")
    comparable: bool = Field(description="No blocking difference, and something measured in both.")
    differences: list[RequestDifference] = Field(description="Request fields that differ (model and endpoint are "
                                                             "the point of a comparison and are not listed).")
    verdict: Verdict = Field(description="Worse when any dataset or directed metric is worse, else better when "
                                         "any is better.")
    reasons: list[str] = Field(description="Why the jobs are not comparable, if they are not.")
    confidence: float | None = Field(None, description="eval: of the bootstrap intervals.")
    resamples: int | None = Field(None, description="eval: bootstrap resamples (seeded: answers repeat).")
    tolerance_pct: float | None = Field(None, description="perf: a change within this many % is within tolerance.")
    scores: list[ScoreComparison] = Field(default_factory=list, description="eval: per dataset, then per subset.")
    metrics: list[PerfComparison] = Field(default_factory=list, description="perf: per test point and metric.")


class LeaderboardEntry(BaseModel):
    model: str
    dataset: str
    score: float | None = Field(description="The primary score of the newest succeeded eval of the model on it.")
    job_id: str
    finished_at: str = Field(description="ISO 8601.")
    links: dict[str, str] = Field(description="job: the eval it comes from; history: the model's history.")


class Leaderboard(BaseModel):
    entries: list[LeaderboardEntry] = Field(description="By dataset, best score first.")


class HistoryEntry(BaseModel):
    job_id: str
    kind: Literal["eval", "perf"]
    owner: str
    created_at: str = Field(description="ISO 8601.")
    finished_at: str | None
    scores: dict[str, float | None] | None = Field(None, description="eval: the primary score of each dataset.")
    perf: dict[str, dict[str, float | None]] | None = Field(
        None, description="perf: per test point, key metrics (req/s, output tok/s, failed requests, TTFT p50/p99, "
        "ITL p99, latency p99) named as the CLI's gates name them, e.g. TTFT (ms)@99%.")
    link: str = Field(description="The job.")


class ModelHistory(BaseModel):
    model: str
    jobs: list[HistoryEntry] = Field(description="The model's succeeded jobs, newest first.")
    total: int = Field(description="Over all pages.")
    limit: int
    offset: int


class CallerView(BaseModel):
    """Who the service takes the caller for: the web UI shows it, and offers the owner filter to an admin."""

    principal: str = Field(description="The principal of the caller's token (auth off: default).")
    admin: bool = Field(description="Sees, filters and acts on every principal's jobs.")
    auth: bool = Field(description="The service requires a bearer token.")
