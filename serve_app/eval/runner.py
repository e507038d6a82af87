"""Inside a worker process: run evalscope on one dataset, and fold finished parts into one run directory."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from serve_app.eval.judge import with_judge_keys
from serve_app.eval.plan import PARTS_DIR, part_dir
from serve_app.eval.resume import dataset_files
from serve_app.jobs.output import print_to_job_log
from serve_app.worker import where_this_runs

# Sub-directories of an evalscope run whose files are named per dataset, so parts merge without collisions.
_PER_DATASET_DIRS = ("predictions", "reviews", "reports")
TASK_CONFIG = Path("configs") / "task_config.yaml"  # also the evaluation identity of each benchmark it ran


def run_dataset(
    task_config: dict[str, Any], api_key: str, output_dir: Path, reuse_from: str | None = None,
    judge_api_keys: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Evaluate one dataset with evalscope; returns its report as JSON, its primary score, and how many
    predictions it took over from `reuse_from` (a resumed job's directory: evalscope's cache asks only the rest).
    `judge_api_keys`: the keys of the task config's judges, in order (it carries none).

    What evalscope prints goes to the log of the job whose run directory is `output_dir`.
    """
    (dataset,) = task_config["datasets"]
    print_to_job_log(output_dir, dataset, secrets=[api_key, *judge_api_keys])
    # Where it ran, in the job's log: datasets run on as many nodes as the cluster has. Not worth failing for on a
    # full disk: evalscope's own writes then fail the dataset, naming the run directory.
    with contextlib.suppress(OSError):
        print(where_this_runs())
    reused = _take_over_predictions(Path(reuse_from), dataset, Path(task_config["work_dir"])) if reuse_from else 0
    # evalscope quiets httpx's line per request; the openai client now sends through httpx2, which it does not.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    # evalscope turns math_verify's timeouts off on purpose (they need the main thread); its warning about that
    # speaks to evalscope, not to whoever reads the job's log.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import datasets.config
    from evalscope.config import TaskConfig
    from evalscope.run import run_task

    import serve_app.eval.completions  # noqa: F401  (registers evalscope's model API for completions endpoints)

    # evalscope loads a local_path with datasets.load_dataset, whose cache entry for a directory depends on its name
    # and README configs only (<cache>/gsm8k/main/0.0.0/<hash>), not on its path or files: in a shared cache a second
    # gsm8k directory would be scored on the first one's questions. So each run gets its own cache, set on
    # datasets.config (read at every load) rather than HF_DATASETS_CACHE (read once, when datasets is imported).
    with tempfile.TemporaryDirectory(prefix="hf-datasets-") as private_cache:
        datasets.config.HF_DATASETS_CACHE = Path(private_cache)
        results = run_task(TaskConfig(api_key=api_key, **with_judge_keys(task_config, list(judge_api_keys))))
    report = results.get(dataset)
    if report is None:
        raise RuntimeError(f"evalscope produced no report for {dataset}")
    return {"report": report.to_dict(), "score": report.score, "reused": reused}


def _take_over_predictions(previous: Path, dataset: str, work_dir: Path) -> int:
    """Copy the dataset's predictions and reviews from `previous` into this run's own directory, with the task
    config that says which evaluation made them (evalscope reuses them only for the same one); the count of
    predictions copied."""
    reused = 0
    for path in [*dataset_files(previous, dataset), previous / TASK_CONFIG]:
        if not path.is_file():
            continue
        target = work_dir / path.relative_to(previous)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        if path.parts[len(previous.parts)] == "predictions":
            with open(path, "rb") as predictions:
                reused += sum(1 for line in predictions if line.strip())
    print(f"reusing {reused} predictions from {previous}")
    return reused


def combine_parts(output_dir: Path, datasets: list[str]) -> None:
    """Fold each dataset's part into `output_dir`, in evalscope's layout, and render one HTML report for all."""
    print_to_job_log(output_dir, "report")
    from evalscope.report import gen_html_report_file
    from evalscope.utils.io_utils import dict_to_yaml, yaml_to_dict

    parts = output_dir / PARTS_DIR
    if not parts.is_dir():
        return
    merged_config: dict[str, Any] | None = None
    (output_dir / "logs").mkdir(parents=True, exist_ok=True)
    with open(output_dir / "logs" / "eval_log.log", "a", encoding="utf-8") as combined_log:
        for dataset in datasets:
            part = part_dir(output_dir, dataset)
            for sub in _PER_DATASET_DIRS:
                if (part / sub).is_dir():
                    shutil.copytree(part / sub, output_dir / sub, dirs_exist_ok=True)
            log = part / "logs" / "eval_log.log"
            if log.is_file():
                combined_log.write(f"===== {dataset} =====\n{log.read_text(encoding='utf-8', errors='replace')}\n")
            config_file = part / TASK_CONFIG
            if config_file.is_file():
                config = yaml_to_dict(str(config_file))
                if merged_config is None:
                    merged_config = config
                else:
                    merged_config["datasets"] = merged_config.get("datasets", []) + config.get("datasets", [])
                    merged_config.setdefault("dataset_args", {}).update(config.get("dataset_args") or {})
                    # Which evaluation made each dataset's predictions: a resumed job reuses them only for the same.
                    identities = (config.get("evaluation_identity") or {}).get("benchmarks") or {}
                    merged_config.setdefault("evaluation_identity", {}).setdefault("benchmarks", {}).update(
                        identities)
    if merged_config is not None:
        merged_config["work_dir"] = str(output_dir)
        (output_dir / TASK_CONFIG.parent).mkdir(exist_ok=True)
        dict_to_yaml(merged_config, str(output_dir / TASK_CONFIG))
    for stale_html in (output_dir / "reports").glob("**/report.html"):
        stale_html.unlink()
    if (output_dir / "reports").is_dir():
        gen_html_report_file(str(output_dir / "reports"))
    shutil.rmtree(parts, ignore_errors=True)
