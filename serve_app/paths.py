"""Where runs write and where datasets are read from: pure path logic shared by eval and perf."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from pathlib import Path

from serve_app.errors import RequestError

# evalscope perf dataset plugins that read prompts from a file (and would otherwise fetch one from a hub).
PERF_FILE_DATASETS = {"openqa": "open_qa.jsonl", "longalpaca": None, "line_by_line": None, "share_gpt": None}


def new_run_dir(outputs_root: Path, kind: str, model: str, work_dir: str | None = None) -> Path:
    """A fresh directory for one run: `work_dir` under the outputs root when given, else a timestamped one."""
    if work_dir:
        return resolve_under(outputs_root, work_dir)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"
    return outputs_root / kind / f"{stamp}_{secrets.token_hex(3)}" / safe_model


def resolve_under(root: Path, path: str) -> Path:
    """A relative path is taken relative to `root`; an absolute one is kept."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def resolve_dataset_file(dataset: str, dataset_path: str | None, datasets_root: Path) -> str | None:
    """The prompt file a perf dataset plugin reads, or None for plugins that generate prompts themselves."""
    if dataset_path:
        path = resolve_under(datasets_root, dataset_path)
        if not path.exists():
            raise RequestError(f"dataset_path {dataset_path!r} does not exist (looked at {path})")
        return str(path)
    if dataset not in PERF_FILE_DATASETS:
        return None
    staged = datasets_root / dataset
    default_file = PERF_FILE_DATASETS[dataset]
    if staged.is_dir() and default_file and (staged / default_file).is_file():
        return str(staged / default_file)
    if staged.is_file():
        return str(staged)
    raise RequestError(
        f"dataset {dataset!r} reads its prompts from a file: pass dataset_path, or stage the file at "
        f"{staged}{'/' + default_file if default_file else ''} (the service does not download datasets)"
    )
