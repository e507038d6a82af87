"""Where runs write and where datasets are read from: pure path logic shared by eval and perf.

Every path a request names is confined: it must resolve (symlinks and `..` followed) inside one of the service's
roots, so a request can neither read nor overwrite files the operator did not put there.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError

if TYPE_CHECKING:
    from serve_app.perf.datasets import PerfDataset

JOB_LOG = "job.log"  # the job manager's log of a job, in its run directory: also what marks a run directory
_MODEL_DIR_CHARS = 64  # the model's part of a run directory's path
_NAME_MAX_BYTES = 255  # the longest file name Linux file systems take


def new_run_dir(args: ServiceArgs, kind: str, model: str, work_dir: str | None = None) -> Path:
    """A new directory for one run, in `work_dir` (inside the outputs root) when given, else under `<kind>/`.

    Every run gets a directory of its own, so two jobs given one `work_dir` never share files, logs or artifacts;
    `work_dir` may not lie inside another run's directory, whose artifacts would then hold this one.
    """
    base = args.outputs_root / kind
    if work_dir:
        base = confine("work_dir", work_dir, {"outputs root": args.outputs_root})
        for directory in (base, *base.parents):
            if directory.exists() and not directory.is_dir():
                raise RequestError(f"work_dir {work_dir!r} runs into a file ({directory}); name a directory")
            if (directory / JOB_LOG).is_file():
                raise RequestError(f"work_dir {work_dir!r} lies inside the output directory of another job")
            if directory == args.outputs_root.resolve():
                break
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._")[:_MODEL_DIR_CHARS] or "model"
    return base / f"{stamp}_{secrets.token_hex(4)}" / safe_model


def dataset_roots(args: ServiceArgs) -> dict[str, Path]:
    """The roots a request may read datasets from, by the name an error message gives them."""
    roots = {"datasets root": args.datasets_root}
    if args.samples_root is not None:
        roots["samples root"] = args.samples_root
    return roots


def confine(field: str, path: str, roots: dict[str, Path]) -> Path:
    """`path` resolved (relative to the first root) if it lies inside one of `roots`; else a 400 naming them."""
    real_roots = {name: root.resolve() for name, root in roots.items()}
    candidate = Path(path).expanduser()
    if any(len(part.encode()) > _NAME_MAX_BYTES for part in candidate.parts):
        raise RequestError(f"{field} has a path component over {_NAME_MAX_BYTES} bytes, the file system's limit")
    resolved = (candidate if candidate.is_absolute() else next(iter(real_roots.values())) / candidate).resolve()
    if any(resolved.is_relative_to(root) for root in real_roots.values()):
        return resolved
    allowed = " or ".join(f"the {name} ({root})" for name, root in real_roots.items())
    raise RequestError(f"{field} {path!r} is outside the allowed directories: it must lie inside {allowed}")


_IS_KIND = {"a directory": Path.is_dir, "a file": Path.is_file, "a file or directory": Path.exists}


def confine_dataset_path(field: str, path: object, args: ServiceArgs, kind: str) -> Path:
    """A dataset path named by a request, resolved inside the datasets or samples root, where it must be `kind`
    ("a directory", "a file" or "a file or directory"); else a 400 naming the field."""
    if not isinstance(path, str) or not path:
        raise RequestError(f"{field} must be a non-empty path")
    resolved = confine(field, path, dataset_roots(args))
    if not _IS_KIND[kind](resolved):
        raise RequestError(f"{field} {path!r} is not {kind} (looked at {resolved})")
    return resolved


def resolve_dataset_file(dataset: PerfDataset, dataset_path: str | None, args: ServiceArgs) -> str | None:
    """The local data a perf dataset plugin reads (its `dataset_path`), or None for one that generates prompts.

    A plugin with a hub source reads a file or a directory of the hub's files; any other reads a file.
    """
    kind = "a file or directory" if dataset.hub else "a file"
    if dataset_path:
        return str(confine_dataset_path("dataset_path", dataset_path, args, kind))
    if not (dataset.hub or dataset.reads_file):
        return None
    staged = args.datasets_root / dataset.name
    if _IS_KIND[kind](staged):
        return str(staged)
    needs = "downloads its prompts from a hub" if dataset.hub else "reads its prompts from a file"
    raise RequestError(
        f"dataset {dataset.name!r} {needs}: pass dataset_path, or stage {kind[2:]} at {staged} "
        "(the service does not download datasets)"
    )
