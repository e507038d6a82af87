"""Paths named by a request stay inside the service's roots, whatever `..` and symlinks they use."""

import pytest

from serve_app.config import ServiceArgs
from serve_app.errors import RequestError
from serve_app.eval.plan import plan_eval
from serve_app.paths import new_run_dir, resolve_dataset_file
from serve_app.perf.datasets import PerfDataset
from serve_app.schemas import EvalRequest


@pytest.fixture
def args(tmp_path):
    roots = {name: tmp_path / name for name in ("outputs", "datasets", "samples")}
    for root in roots.values():
        root.mkdir()
    (roots["samples"] / "gsm8k").mkdir()
    (roots["datasets"] / "prompts.jsonl").write_text("{}\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "keys.jsonl").write_text("{}\n")
    return ServiceArgs(outputs_root=roots["outputs"], datasets_root=roots["datasets"], samples_root=roots["samples"])


def eval_with_local_path(local_path):
    return EvalRequest(model="m", datasets=["gsm8k"], api_url="http://h:1/v1",
                       dataset_args={"gsm8k": {"local_path": local_path}})


@pytest.mark.parametrize("work_dir", ["../escaped", "/tmp/elsewhere", "team/../../escaped", "link/inside"])
def test_work_dir_outside_the_outputs_root_is_refused_naming_it(args, tmp_path, work_dir):
    (args.outputs_root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(RequestError, match=f"work_dir .* must lie inside the outputs root \\({args.outputs_root}\\)"):
        new_run_dir(args, "eval", "m", work_dir)


def test_jobs_given_one_work_dir_each_get_a_new_directory_of_their_own_inside_it(args):
    first = new_run_dir(args, "eval", "m", "team-a/nightly")
    second = new_run_dir(args, "eval", "m", "team-a/nightly")
    assert first != second and first.name == second.name == "m"
    assert first.parent.parent == second.parent.parent == args.outputs_root / "team-a" / "nightly"
    # The outputs root itself, or a kind's directory, is a place like any other: the job still gets its own.
    assert new_run_dir(args, "eval", "m", "team/..").parent.parent == args.outputs_root
    assert new_run_dir(args, "perf", "m", str(args.outputs_root / "eval")).parent.parent == args.outputs_root / "eval"


def test_work_dir_inside_another_jobs_directory_is_refused(args):
    other = new_run_dir(args, "eval", "m")
    other.mkdir(parents=True)
    (other / "job.log").write_text("submitted\n")
    with pytest.raises(RequestError, match="inside the output directory of another job"):
        new_run_dir(args, "eval", "m", str(other.relative_to(args.outputs_root) / "mine"))


def test_work_dir_through_a_file_or_with_an_overlong_name_is_refused(args):
    (args.outputs_root / "jobs.sqlite3").write_text("")
    with pytest.raises(RequestError, match="runs into a file"):
        new_run_dir(args, "eval", "m", "jobs.sqlite3/run")
    with pytest.raises(RequestError, match="over 255 bytes"):
        new_run_dir(args, "eval", "m", "x" * 256)


def test_a_long_model_name_fits_a_file_name(args):
    assert len(new_run_dir(args, "eval", "org/" + "m" * 200).name) <= 64


def test_local_path_may_name_the_shipped_samples(args):
    plan = plan_eval(eval_with_local_path(str(args.samples_root / "gsm8k")), args)
    assert plan.tasks[0].source.path == str(args.samples_root / "gsm8k")


@pytest.mark.parametrize("local_path", ["../secret", "/etc", "sneaky"])
def test_local_path_outside_both_roots_is_refused_naming_them(args, tmp_path, local_path):
    (args.datasets_root / "sneaky").symlink_to(tmp_path / "secret")
    with pytest.raises(RequestError) as refused:
        plan_eval(eval_with_local_path(local_path), args)
    message = str(refused.value)
    assert message.startswith(f"dataset_args.gsm8k.local_path {local_path!r} is outside the allowed directories")
    assert f"the datasets root ({args.datasets_root})" in message
    assert f"the samples root ({args.samples_root})" in message


def test_without_a_samples_root_only_the_datasets_root_is_allowed(args):
    args = args.model_copy(update={"samples_root": None})
    with pytest.raises(RequestError, match="must lie inside the datasets root") as refused:
        plan_eval(eval_with_local_path(str(args.datasets_root.parent / "samples" / "gsm8k")), args)
    assert "samples root" not in str(refused.value)


def test_dataset_path_is_confined_and_must_be_a_file(args):
    line_by_line = PerfDataset("line_by_line", hub=False, reads_file=True, needs_tokenizer=False)
    assert resolve_dataset_file(line_by_line, "prompts.jsonl", args) == str(args.datasets_root / "prompts.jsonl")
    with pytest.raises(RequestError, match="outside the allowed directories"):
        resolve_dataset_file(line_by_line, "../secret/keys.jsonl", args)
    with pytest.raises(RequestError, match="is not a file"):
        resolve_dataset_file(line_by_line, ".", args)
