"""`evalscope-serve`: start the service or the simulator, and submit, follow and gate jobs from a shell or CI.

Exit codes of eval/perf/jobs/compare: 0 done and every gate holds, 1 the job failed or was cancelled, 2 a gate
(a regression gate against --baseline too) failed,
3 usage or connection error, 4 the job had not ended at --wait-timeout (so it was cancelled, or left running with
--detach-on-interrupt). Stopped by a signal while following the job (a CI runner cancelling the step: SIGTERM, or
SIGINT first), the CLI cancels the job (or leaves it, detached) and exits 128 + the signal's number, as a shell
reports a command killed by it: 130 for SIGINT, 143 for SIGTERM; a second signal exits at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from serve_app import ci_reports
from serve_app.eval.benchmarks import close_matches
from serve_app.gates import (
    Gate,
    InvalidGate,
    RegressionGate,
    capacity_gate,
    change_gates,
    drop_gates,
    eval_gates,
    goodput_gate,
    perf_gates,
    slo_limits,
)
from serve_app.gates import number as shown_number  # `number` names signal numbers below

EXIT_OK, EXIT_JOB_FAILED, EXIT_GATE_FAILED, EXIT_USAGE, EXIT_WAIT_TIMEOUT = 0, 1, 2, 3, 4
JUDGE_API_KEY_ENV = "EVALSCOPE_SERVE_JUDGE_API_KEY"


class UsageError(ValueError):
    """Options that make no request together; refused (exit 3) before anything is submitted."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A stopped step asks the service to cancel its job for at most this long, then exits whatever the answer: within
# GitHub Actions' 7.5 s from SIGINT to SIGTERM, GitLab's and Kubernetes' grace before SIGKILL.
CANCEL_TIMEOUT_S = 5.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2, which means "a gate failed" here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evalscope-serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    service = commands.add_parser("service", help="start the HTTP service on Ray Serve")
    service.add_argument("--host", default="0.0.0.0")
    service.add_argument("--port", type=int, default=9000)
    service.add_argument("--debug", action="store_true", help="tracebacks in every error response")
    service.add_argument("--outputs-root", default="outputs")
    service.add_argument("--datasets-root", default="datasets")

    run = commands.add_parser("run", help="serve run a Serve config; SIGTERM stops it as Ctrl-C does")
    run.add_argument("config", nargs="?", default="configs/serve.yaml")
    run.add_argument("--address", help="the Ray cluster to join (default: as serve run finds or starts one)")

    simulate = commands.add_parser("simulate", help="start the OpenAI-compatible simulator")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8801)
    simulate.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first token")
    simulate.add_argument("--itl-ms", type=float, default=0.0, help="delay between tokens")
    simulate.add_argument("--output-tokens", type=int, default=16, help="reply length for unknown prompts")
    simulate.add_argument("--model", default="simulator")
    simulate.add_argument("--max-concurrency", type=int, default=0,
                          help="serve at most this many requests at once, queueing the rest (0: no limit)")
    simulate.add_argument("--judge", choices=("fair", "harsh"), default="fair",
                          help="as an LLM judge: fair grades a predicted answer that contains the reference one "
                               "correct; harsh grades every answer incorrect")

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--server", default="http://127.0.0.1:9000", help="the service's base URL")
    client.add_argument("--token", help="bearer token (default: $EVALSCOPE_SERVE_TOKEN)")
    client.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP call")
    client.add_argument("--http-retries", type=_retries, default=5, metavar="N",
                        help="retries of a call the service cannot answer yet (refused, busy, still deploying), "
                             "waiting 1, 2, 4, ... s in between (5: about 30 s in all; 0: fail at once)")

    submit = argparse.ArgumentParser(add_help=False, parents=[client])
    submit.add_argument("--model", required=True)
    submit.add_argument("--api-key", help="key for the model endpoint (never printed)")
    submit.add_argument("--json", action="store_true", help="print the result document instead of a summary")
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return")
    submit.add_argument("--detach-on-interrupt", action="store_true",
                        help="a signal (Ctrl-C, SIGTERM) or --wait-timeout leaves the job running instead of "
                             "cancelling it")
    submit.add_argument("--wait-timeout", type=float, metavar="SECONDS",
                        help="cancel the job (or leave it, with --detach-on-interrupt) and exit 4 when it has not "
                             "ended this long after the submission")
    submit.add_argument("--junit-xml", metavar="PATH",
                        help="write JUnit XML: a test case for the job, one per gate and test point")
    submit.add_argument("--summary-md", metavar="PATH", default=os.environ.get("GITHUB_STEP_SUMMARY"),
                        help="append a Markdown summary of the job and its gates (default: $GITHUB_STEP_SUMMARY)")
    submit.add_argument("--idempotency-key", help="default: a fresh one per invocation")
    submit.add_argument("--baseline", metavar="JOB|latest",
                        help="compare the job with this succeeded job of the same kind and print the comparison; "
                             "latest: your newest succeeded job of the model (or of --baseline-model), found before "
                             "submitting")
    submit.add_argument("--baseline-model", metavar="MODEL", help="with --baseline latest: this model's newest job")

    evaluate = commands.add_parser("eval", parents=[submit], help="score a model on benchmarks")
    evaluate.add_argument("--api-url", required=True)
    evaluate.add_argument("--datasets", nargs="+", required=True)
    evaluate.add_argument("--eval-type", choices=["openai_api", "openai_completions"],
                          help="openai_api: a chat endpoint (default); openai_completions: a completions endpoint")
    evaluate.add_argument("--limit", type=_limit, help="samples per subset (5), or a fraction of each (0.5; 1.0: all)")
    evaluate.add_argument("--eval-batch-size", type=int)
    evaluate.add_argument("--max-tokens", type=int)
    evaluate.add_argument("--temperature", type=float)
    evaluate.add_argument("--request-timeout", type=float,
                          help="seconds a model request may wait to connect or for its next bytes")
    evaluate.add_argument("--retries", type=int, help="attempts per model request (1: no retry)")
    evaluate.add_argument("--work-dir")
    evaluate.add_argument("--dataset-args", type=json.loads, help="JSON, e.g. '{\"gsm8k\": {\"few_shot_num\": 0}}'")
    evaluate.add_argument("--judge", type=json.loads,
                          help="LLM-as-judge scoring, JSON as the request's judge, e.g. '{\"strategy\": \"llm\", "
                               "\"models\": [{\"model_id\": \"qwen\", \"api_url\": \"http://judge:8000/v1\"}]}'; "
                               f"a judge without an api_key gets ${JUDGE_API_KEY_ENV} when it is set")
    evaluate.add_argument("--min-score", action="append", default=[], metavar="DATASET=SCORE",
                          help="fail (exit 2) when a dataset scores below this")
    evaluate.add_argument("--max-drop", action="append", default=[], metavar="DATASET=SCORE",
                          help="with --baseline: fail (exit 2) when the dataset's score falls by more than this from "
                               "the baseline's and the fall is significant (95 %% paired bootstrap), e.g. gsm8k=0.02")

    perf = commands.add_parser("perf", parents=[submit], help="load-test an endpoint")
    perf.add_argument("--url", required=True)
    perf.add_argument("--api")
    perf.add_argument("--number", type=int, nargs="+")
    perf.add_argument("--parallel", type=int, nargs="+")
    perf.add_argument("--rate", type=float, nargs="+",
                      help="arrivals per second (several: a rate sweep, paired with --number)")
    perf.add_argument("--open-loop", action="store_true", default=None,
                      help="send arrivals on schedule whatever is still in flight (--parallel then caps it, if given)")
    perf.add_argument("--arrival", choices=["poisson", "constant", "gamma"], help="how arrivals are spaced")
    perf.add_argument("--burstiness", type=float, help="gamma's shape with --arrival gamma (1 is Poisson)")
    perf.add_argument("--ramp-up-s", type=float, help="raise the rate linearly from ~0 over these first seconds")
    perf.add_argument("--stop-on-saturation", action="store_true", default=None,
                      help="end a test point early once the target falls behind the load")
    perf.add_argument("--multi-turn", action="store_true", default=None,
                      help="a multi-turn chat load: --number counts conversations, each sent turn by turn with its "
                           "history (a conversation --dataset: custom_multi_turn, random_multi_turn, ...)")
    perf.add_argument("--min-turns", type=int, help="--multi-turn: fewest user turns of a random conversation")
    perf.add_argument("--max-turns", type=int, help="--multi-turn: most user turns of a conversation")
    perf.add_argument("--dataset")
    perf.add_argument("--dataset-path")
    perf.add_argument("--max-tokens", type=int)
    perf.add_argument("--temperature", type=float)
    perf.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None)
    perf.add_argument("--warmup", type=int)
    perf.add_argument("--shards", type=int)
    perf.add_argument("--duration", type=float, dest="duration_s",
                      help="seconds after which each test point ends (also ending by --number, whichever is first)")
    perf.add_argument("--total-timeout", type=float, help="seconds one request may take before it counts as failed")
    perf.add_argument("--slo", action="append", default=[], metavar="LIMIT=MS",
                      help="a per-request limit (ttft_ms, tpot_ms, itl_ms, e2e_ms), e.g. --slo ttft_ms=500; each "
                           "test point then reports its goodput")
    perf.add_argument("--min-goodput", type=float, metavar="FRACTION",
                      help="fail when a test point's fraction of requests within the slo is below this, e.g. 0.99; "
                           "with --search, the fraction a load must reach to pass")
    perf.add_argument("--search", choices=["parallel", "rate"],
                      help="find the highest load (concurrent requests or req/s) that meets the slo")
    perf.add_argument("--search-range", nargs=2, type=float, metavar=("LOW", "HIGH"),
                      help="the loads the search tries, e.g. 1 256 (required with --search)")
    perf.add_argument("--max-probes", type=int, help="most test points the search runs (default 8)")
    perf.add_argument("--probe-duration", type=float, help="seconds each probe sends (default 10)")
    perf.add_argument("--min-capacity", type=float, metavar="LOAD",
                      help="fail when the capacity the search finds is below this")
    perf.add_argument("--max", action="append", default=[], dest="max_gates", metavar='"METRIC[@PCT]"=VALUE',
                      help='fail when above, e.g. "TTFT (ms)@99%%"=500 (names as in evalscope\'s tables)')
    perf.add_argument("--min", action="append", default=[], dest="min_gates", metavar='"METRIC[@PCT]"=VALUE',
                      help='fail when below, e.g. "Req Throughput (req/s)"=100')
    perf.add_argument("--max-increase", action="append", default=[], metavar='"METRIC[@PCT]"=VALUE[%]',
                      help='with --baseline: fail when a test point\'s value rises more than this from the '
                           'baseline\'s, in %% or in the metric\'s unit, e.g. "TTFT (ms)@99%%"=10%%')
    perf.add_argument("--max-decrease", action="append", default=[], metavar='"METRIC[@PCT]"=VALUE[%]',
                      help='with --baseline: fail when it falls more than this, e.g. "Req Throughput (req/s)"=5%%')

    jobs = commands.add_parser("jobs", help="list, show, cancel, log or report jobs")
    actions = jobs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    listing = actions.add_parser("list", parents=[client])
    listing.add_argument("--kind", choices=["eval", "perf"])
    listing.add_argument("--status")
    listing.add_argument("--model")
    listing.add_argument("--limit", type=int, default=20)
    for action in ("show", "cancel", "log", "report"):
        actions.add_parser(action, parents=[client]).add_argument("job_id")

    compare = commands.add_parser("compare", parents=[client], help="compare two succeeded jobs of one kind")
    compare.add_argument("baseline", help="the job to compare against")
    compare.add_argument("candidate")
    compare.add_argument("--tolerance", help="perf: a change within this percentage is within tolerance (default 5%%)")
    compare.add_argument("--json", action="store_true", help="print the whole comparison as JSON")

    leaderboard = commands.add_parser("leaderboard", parents=[client],
                                      help="each model's newest score on each dataset")
    leaderboard.add_argument("--datasets", nargs="+")
    leaderboard.add_argument("--models", nargs="+")

    history = commands.add_parser("history", parents=[client], help="a model's succeeded jobs, newest first")
    history.add_argument("model")
    history.add_argument("--kind", choices=["eval", "perf"])
    history.add_argument("--limit", type=int, default=20)

    benchmarks = commands.add_parser("benchmarks", parents=[client], help="the benchmarks an eval can name")
    benchmarks.add_argument("--staged", action="store_true", help="only those staged on the service (no hub needed)")
    benchmarks.add_argument("--all", action="store_true", help="also those the service refuses, with the reason")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "service":
        from serve_app import run_service

        run_service(host=args.host, port=args.port, debug=args.debug, outputs_root=args.outputs_root,
                    datasets_root=args.datasets_root)
        return EXIT_OK
    if args.command == "run":
        from serve_app import run_config

        run_config(args.config, args.address)
        return EXIT_OK
    if args.command == "simulate":
        from serve_app.simulator import SimulatorConfig, run_simulator

        config = SimulatorConfig(ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, output_tokens=args.output_tokens,
                                 model=args.model, max_concurrency=args.max_concurrency, judge=args.judge)
        run_simulator(host=args.host, port=args.port, config=config)
        return EXIT_OK
    return _client_command(args)


def _client_command(args: argparse.Namespace) -> int:
    import httpx
    from pydantic import ValidationError

    from serve_app.client import Client, ServiceError

    try:
        with Client(args.server, token=args.token, timeout_s=args.timeout, retries=args.http_retries) as client:
            if args.command == "jobs":
                return _jobs(client, args)
            if args.command == "benchmarks":
                return _benchmarks(client, args)
            if args.command == "compare":
                return _compare(client, args)
            if args.command == "leaderboard":
                return _leaderboard(client, args)
            if args.command == "history":
                return _history(client, args)
            return _submit_and_follow(client, args)
    except (InvalidGate, UsageError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ServiceError as exc:
        print(f"error: the service answered {exc}", file=sys.stderr)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {args.server}: {exc}", file=sys.stderr)
    return EXIT_USAGE


def _submit_and_follow(client: Any, args: argparse.Namespace) -> int:
    request = _request(args)
    gates = _gates(args)
    if args.command == "eval":
        _check_benchmarks(client, request["datasets"])
    baseline = _baseline(client, args)
    submit = client.submit_eval if args.command == "eval" else client.submit_perf
    if args.no_wait:
        print(submit(request, idempotency_key=args.idempotency_key).job_id)
        return EXIT_OK
    started = time.monotonic()
    with _StopSignals() as signals:
        job = submit(request, idempotency_key=args.idempotency_key)
        print(f"job {job.job_id} {job.status}", file=sys.stderr)
        job, stop = _follow(client, job, args, signals, started)
    print(file=sys.stderr)
    if job.result is not None:  # also a failed eval's datasets that did score
        print(json.dumps(job.result, indent=2) if args.json else _summary(job.kind, job.result))
    comparison = None
    if baseline and job.status == "succeeded" and not stop:
        comparison = client.compare(baseline, job.job_id)
        if not args.json:
            print(_comparison_summary(comparison))
    verdict = _verdict(job, stop, gates, args.server, time.monotonic() - started, comparison)
    try:
        ci_reports.write(verdict, args.junit_xml, args.summary_md)
    except OSError as exc:
        print(f"error: cannot write a report: {exc}", file=sys.stderr)
        return verdict.exit_code or EXIT_USAGE
    return verdict.exit_code


def _verdict(job: Any, stop: _Stop | None, gates: list[Gate], server: str, elapsed_s: float,
             comparison: Any = None) -> ci_reports.Verdict:
    """The exit code and the gates' outcomes; says on stderr what failed."""
    if stop:  # _follow said what it did
        return ci_reports.Verdict(job, server, stop.exit_code, elapsed_s, gates, [], stopped=stop.cause)
    if job.status != "succeeded":
        print(f"job {job.job_id} {job.status}: {job.error}", file=sys.stderr)
        return ci_reports.Verdict(job, server, EXIT_JOB_FAILED, elapsed_s, gates, [])
    compared = comparison.model_dump() if comparison is not None else None
    outcomes = [outcome for gate in gates
                for outcome in gate.evaluate(compared if isinstance(gate, RegressionGate) else job.result)]
    failures = [outcome for outcome in outcomes if not outcome.passed]
    for outcome in failures:
        print(f"gate failed: {outcome.describe()}", file=sys.stderr)
    return ci_reports.Verdict(job, server, EXIT_GATE_FAILED if failures else EXIT_OK, elapsed_s, gates, outcomes,
                              comparison=comparison)

def _limit(text: str) -> int | float:
    """evalscope's meaning, kept as typed: "5" is a count, "0.5" or "1.0" a fraction of each subset."""
    return int(text) if text.strip().isdigit() else float(text)


def _retries(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"not a count of retries (0, 1, 2, ...): {text!r}")
    return int(text)


def _check_benchmarks(client: Any, names: list[str]) -> None:
    """Refuse (exit 3) a benchmark name the service does not know, with the names it does that look alike, or one
    it will not run, before a job is submitted."""
    catalogue = {benchmark.name: benchmark for benchmark in client.benchmarks().benchmarks}
    for name in names:
        if name not in catalogue:
            close = close_matches(name, catalogue)
            hint = f"did you mean {' or '.join(close)}?" if close else "`evalscope-serve benchmarks` lists them"
            raise UsageError(f"the service has no benchmark {name!r}: {hint}")
        if catalogue[name].refused:
            raise UsageError(catalogue[name].refused)


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """The request body from the flags the user gave; the service's defaults fill the rest."""
    if args.command == "eval":
        fields = {"api_url": args.api_url, "datasets": args.datasets, "eval_batch_size": args.eval_batch_size,
                  "work_dir": args.work_dir, "dataset_args": args.dataset_args, "eval_type": args.eval_type}
        if args.limit is not None:
            fields["limit"] = args.limit
        generation = {"max_tokens": args.max_tokens, "temperature": args.temperature,
                      "timeout": args.request_timeout, "retries": args.retries}
        fields["generation_config"] = {k: v for k, v in generation.items() if v is not None} or None
        fields["judge"] = _judge(args.judge)
    else:
        fields = {name: getattr(args, name) for name in (
            "url", "api", "dataset", "dataset_path", "max_tokens", "temperature", "stream", "warmup", "shards",
            "total_timeout", "duration_s", "open_loop", "arrival", "burstiness", "ramp_up_s", "stop_on_saturation",
            "multi_turn", "min_turns", "max_turns")}
        for name in ("number", "parallel", "rate"):
            values = getattr(args, name)
            fields[name] = values[0] if values and len(values) == 1 else values
        fields["slo"] = slo_limits(args.slo) or None
        fields["search"] = _search(args)
    fields.update(model=args.model, api_key=args.api_key)
    return {name: value for name, value in fields.items() if value is not None}


def _judge(judge: Any) -> Any:
    """--judge, each judge without a key given $EVALSCOPE_SERVE_JUDGE_API_KEY (a key on a command line shows in
    the process list)."""
    key = os.environ.get(JUDGE_API_KEY_ENV)
    if not key or not isinstance(judge, dict) or not isinstance(judge.get("models"), list):
        return judge  # the service names what is wrong with it
    return {**judge, "models": [{"api_key": key, **model} if isinstance(model, dict) else model
                                for model in judge["models"]]}


def _gates(args: argparse.Namespace) -> list[Gate]:
    if args.command == "eval":
        gates = eval_gates(args.min_score) + drop_gates(args.max_drop, args.datasets)
    else:
        gates = perf_gates(args.max_gates, args.min_gates) + change_gates(args.max_increase, args.max_decrease)
        if args.min_capacity is not None:
            gates.append(capacity_gate(args.min_capacity, args.search))
        elif args.min_goodput is not None and not args.search:
            gates.append(goodput_gate(args.min_goodput, slo_limits(args.slo)))
    if not args.baseline and any(isinstance(gate, RegressionGate) for gate in gates):
        raise UsageError("--max-drop, --max-increase and --max-decrease hold the change from a baseline: give "
                         "--baseline JOB or --baseline latest")
    if args.baseline_model and args.baseline != "latest":
        raise UsageError("--baseline-model names whose newest job --baseline latest compares with: give both")
    return gates


def _baseline(client: Any, args: argparse.Namespace) -> str | None:
    """The baseline job's id, checked before the candidate runs: a succeeded job of the same kind."""
    if not args.baseline:
        return None
    if args.baseline == "latest":
        model = args.baseline_model or args.model
        newest = client.history(model, kind=args.command, mine=True, limit=1).jobs
        if not newest:
            raise UsageError(f"--baseline latest: you have no succeeded {args.command} job of model {model!r}")
        print(f"baseline: {newest[0].job_id} (your newest succeeded {args.command} job of {model})", file=sys.stderr)
        return newest[0].job_id
    job = client.job(args.baseline)
    if job.kind != args.command or job.status != "succeeded":
        raise UsageError(f"--baseline {job.job_id} is a {job.status} {job.kind} job; a succeeded {args.command} "
                         "job is needed")
    return job.job_id


def _compare(client: Any, args: argparse.Namespace) -> int:
    comparison = client.compare(args.baseline, args.candidate, tolerance=args.tolerance)
    print(comparison.model_dump_json(indent=2) if args.json else _comparison_summary(comparison))
    return EXIT_OK


def _leaderboard(client: Any, args: argparse.Namespace) -> int:
    entries = client.leaderboard(datasets=args.datasets, models=args.models).entries
    print(_table(["dataset", "model", "score", "job", "finished"],
                 [(e.dataset, e.model, "n/a" if e.score is None else f"{e.score:.4f}", e.job_id, e.finished_at)
                  for e in entries]))
    return EXIT_OK


def _history(client: Any, args: argparse.Namespace) -> int:
    """One row per eval (its scores) and per perf test point (its throughput and TTFT p99), newest first."""
    page = client.history(args.model, kind=args.kind, limit=args.limit)
    rows = [(job.job_id, job.kind, job.finished_at, ", ".join(f"{dataset} {score:.4f}" for dataset, score in
                                                              (job.scores or {}).items() if score is not None))
            for job in page.jobs if job.kind == "eval"]
    rows += [(job.job_id, job.kind, job.finished_at,
              f"{point}: {shown_number(metrics.get('Req Throughput (req/s)'))} req/s, "
              f"TTFT p99 {shown_number(metrics.get('TTFT (ms)@99%'))} ms")
             for job in page.jobs if job.kind == "perf" for point, metrics in (job.perf or {}).items()]
    rows.sort(key=lambda row: row[2] or "", reverse=True)
    print(_table(["job", "kind", "finished", "scores or key metrics"], rows))
    print(f"{len(page.jobs)} of {page.total}")
    return EXIT_OK


def _comparison_summary(comparison: Any) -> str:
    lines = [f"{comparison.kind} {comparison.candidate} against baseline {comparison.baseline}: {comparison.verdict}"]
    lines += [f"  not comparable: {reason}" for reason in comparison.reasons]
    lines += [f"  differs: {d.field}: {d.baseline!r} -> {d.candidate!r}" for d in comparison.differences
              if not d.blocking]
    if comparison.tolerance_pct is not None:
        lines.append(f"  tolerance {comparison.tolerance_pct:g}%")
    return "\n".join([*lines, _table(*ci_reports.comparison_table(comparison))])


def _search(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.search:
        return None
    if not args.search_range:
        raise UsageError("--search needs --search-range LOW HIGH, e.g. --search-range 1 256")
    low, high = args.search_range
    search = {"vary": args.search, "low": low, "high": high, "min_goodput": args.min_goodput,
              "max_probes": args.max_probes, "probe_duration_s": args.probe_duration}
    return {name: value for name, value in search.items() if value is not None}


def _summary(kind: str, result: dict) -> str:
    search = f"\n{result['search']['verdict']}" if result.get("search") else ""
    saturation = "".join(f"\n{_saturation_line(point, outcome['saturation'])}"
                         for point, outcome in result.get("results", {}).items() if outcome.get("saturation"))
    return (_table(*ci_reports.result_table(kind, result)) + saturation + search
            + f"\noutputs: {result['output_dir']}")


def _saturation_line(point: str, saturation: dict) -> str:
    """Whether a rate point's target kept up, with the figures it was judged on."""
    figures = (f"{saturation['achieved_req_per_s']:.4g} of {saturation['requested_req_per_s']:.4g} req/s sent, "
               f"in flight {saturation['in_flight_start']:.3g} -> {saturation['in_flight_end']:.3g}")
    if not saturation["saturated"]:
        return f"{point}: kept up ({figures})"
    not_sent = f"; {saturation['not_sent']} requests not sent" if saturation["not_sent"] else ""
    return f"{point}: saturated ({figures}{not_sent}): {'; '.join(saturation['reasons'])}"


def _table(headers: list[str], rows: list[tuple]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _progress_bar(job: Any) -> None:
    progress = job.progress
    filled = int(progress.percent / 5)
    rate = f" {progress.req_per_s:.1f}/s" if progress.req_per_s else ""
    counts = f"{progress.done}/{progress.total}" if progress.total else ""
    print(f"\r[{'#' * filled}{'.' * (20 - filled)}] {_percent(progress.percent):>6} {counts}{rate}"
          f" {progress.phase or job.status}   ", end="", file=sys.stderr, flush=True)


def _percent(value: float) -> str:
    """Rounded down, so 99.96 % of a job reads 99.9 %, never 100 % before it is."""
    return f"{math.floor(value * 10) / 10:.1f}%"


@dataclass(frozen=True)
class _Stop:
    """Why the CLI stopped following a job before it ended, and the exit code that says so."""

    cause: str
    exit_code: int


def _follow(client: Any, job: Any, args: argparse.Namespace, signals: _StopSignals,
            started: float) -> tuple[Any, _Stop | None]:
    """The job once it ended; or, when a signal or --wait-timeout comes first, once it is cancelled (or left
    running, detached)."""
    last_seen = job

    def on_update(view: Any) -> None:
        nonlocal last_seen
        last_seen = view
        _progress_bar(view)

    timeout_s = None if args.wait_timeout is None else args.wait_timeout - (time.monotonic() - started)
    try:
        with client.interruptible(signals.check):
            signals.arm()
            return client.wait(job.job_id, on_update=on_update, timeout_s=timeout_s), None
    except _Interrupted as interruption:
        stop = _Stop(f"interrupted by {interruption.name}", 128 + interruption.signum)
    except TimeoutError:
        signals.stopping()
        stop = _Stop(f"--wait-timeout {args.wait_timeout:g} s reached", EXIT_WAIT_TIMEOUT)
    return _cancel_unless_detached(client, last_seen, args.detach_on_interrupt, stop), stop


def _cancel_unless_detached(client: Any, job: Any, detach: bool, stop: _Stop) -> Any:
    """The job after asking the service to cancel it, for CANCEL_TIMEOUT_S at most; says what came of it."""
    import httpx

    from serve_app.client import ServiceError

    if detach:
        print(f"\n{stop.cause}: job {job.job_id} left running (--detach-on-interrupt)", file=sys.stderr)
        return job
    try:
        job = client.cancel(job.job_id, timeout_s=CANCEL_TIMEOUT_S)
        print(f"\n{stop.cause}: job {job.job_id} {job.status}", file=sys.stderr)
    except (TimeoutError, httpx.HTTPError, ServiceError) as exc:  # a 409 when the job ended meanwhile
        reason = str(exc) or f"no answer within {CANCEL_TIMEOUT_S:g} s"
        print(f"\n{stop.cause}: could not cancel job {job.job_id}: {reason}", file=sys.stderr)
    return job


class _Interrupted(BaseException):  # as KeyboardInterrupt: no `except Exception` on the way may swallow it
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


class _StopSignals:
    """SIGINT and SIGTERM, which CI runners stop a step with, handled whatever their disposition at start (a step
    started in the background has SIGINT ignored), so that the job is cancelled rather than orphaned.

    The first one stops the CLI's wait for the job with _Interrupted (within the client's CHECK_INTERVAL_S), or
    the CLI right after the submission when it comes during it (so that there is a job to cancel); the handler only
    notes it, as an exception raised from a handler lands wherever the main thread is. While the CLI stops the
    job, another one exits at once."""

    def __enter__(self) -> _StopSignals:
        self.previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
        self.received: int | None = None
        self.armed = False
        self._handle_with(self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def arm(self) -> None:
        """Interrupt from now on (see check), and now for a signal that came before."""
        self.armed = True
        self.check()

    def check(self) -> None:
        """Raise _Interrupted, once, if armed and a signal came."""
        if self.armed and self.received is not None:
            self.armed = False
            raise _Interrupted(self.received)

    def stopping(self) -> None:
        self._handle_with(_exit_at_once)

    def _interrupt(self, signum: int, frame: object) -> None:
        self.stopping()
        self.received = signum

    @staticmethod
    def _handle_with(handler: Any) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, handler)


def _exit_at_once(signum: int, frame: object) -> None:
    print(f"\n{signal.Signals(signum).name} while stopping the job: exiting at once; it may still be running",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(128 + signum)  # no clean-up: that could wait on the very call the user gave up on


def _benchmarks(client: Any, args: argparse.Namespace) -> int:
    shown = [benchmark for benchmark in client.benchmarks().benchmarks
             if (benchmark.staged or not args.staged) and (args.all or not benchmark.refused)]
    rows = [(b.name, b.category, ",".join(b.subsets[:3]) + (",..." if len(b.subsets) > 3 else ""),
             b.samples, "yes" if b.staged else "", "no" if b.refused else "yes") for b in shown]
    print(_table(["benchmark", "category", "subsets", "samples", "staged", "runs here"], rows))
    for benchmark in shown:
        if benchmark.refused:
            print(f"{benchmark.name}: {benchmark.refused}")
    return EXIT_OK


def _jobs(client: Any, args: argparse.Namespace) -> int:
    if args.action == "list":
        page = client.list_jobs(kind=args.kind, status=args.status, model=args.model, limit=args.limit)
        rows = [(j.job_id, j.kind, j.status, j.model, j.owner, _percent(j.progress.percent), j.created_at)
                for j in page.jobs]
        print(_table(["job", "kind", "status", "model", "owner", "progress", "created"], rows))
        print(f"{len(page.jobs)} of {page.total}")
    elif args.action == "show":
        print(client.job(args.job_id).model_dump_json(indent=2))
    elif args.action == "cancel":
        print(client.cancel(args.job_id).status)
    elif args.action == "log":
        print("\n".join(client.log(args.job_id).lines))
    else:
        print(client.report(args.job_id))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
