"""A job's worker output in the job's log: readable lines, secrets masked, bounded."""

import subprocess
import sys

from serve_app.jobs.output import JobLogStream
from serve_app.paths import JOB_LOG

KEY = "sk-planted-0123456789"


def test_lines_are_tagged_plain_and_masked_and_progress_bars_left_out(tmp_path):
    stream = JobLogStream(tmp_path / JOB_LOG, "gsm8k", secrets=[KEY, "EMPTY"])
    stream.write("\x1b[32mINFO\x1b[0m: calling with key " + KEY + "\n")
    for done in range(1, 4):  # a line redrawn in place, as a terminal shows it: the last state only
        stream.write(f"\rloaded {done} of 3 files")
    stream.write("\n")
    for done in range(1, 101):  # tqdm's bar; evalscope logs the progress itself
        stream.write(f"\rEvaluating[gsm8k]: {done:3d}%|#| {done}/100 [00:0{done % 10}<00:01,  3.64s/it]")
    stream.write("\nGenerating test split: 15 examples [00:00, 1594.87 examples/s]\n\n")
    stream.write("api_key EMPTY is evalscope's placeholder, not a secret\nhalf a line")
    assert (tmp_path / JOB_LOG).read_text().splitlines() == [
        "[gsm8k] INFO: calling with key ***",
        "[gsm8k] loaded 3 of 3 files",
        "[gsm8k] api_key EMPTY is evalscope's placeholder, not a secret",
    ]


def test_output_past_the_bound_is_left_out_saying_so(tmp_path):
    stream = JobLogStream(tmp_path / JOB_LOG, "shard 0", max_bytes=100)
    for i in range(50):
        stream.write(f"request {i} sent\n")
    lines = (tmp_path / JOB_LOG).read_text().splitlines()
    assert lines[:3] == ["[shard 0] request 0 sent", "[shard 0] request 1 sent", "[shard 0] request 2 sent"]
    assert lines[-1] == "[shard 0] (the rest is left out: over 100 bytes)"
    assert len(lines) <= 5


def test_a_process_sends_print_logging_and_warnings_to_the_job_log(tmp_path):
    script = f"""
import logging, warnings
from serve_app.jobs.output import print_to_job_log
print_to_job_log({str(tmp_path)!r}, "iquiz", secrets=[{KEY!r}])
logging.basicConfig(level=logging.INFO)  # as evalscope does on import, after the process was pointed at the job
print("printed with {KEY}")
logging.getLogger("evalscope").info("logged")
warnings.warn("careful")
"""
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0 and finished.stdout == finished.stderr == "", finished
    lines = (tmp_path / JOB_LOG).read_text().splitlines()
    assert lines[:2] == ["[iquiz] printed with ***", "[iquiz] INFO:evalscope:logged"]
    assert lines[2:] == ["[iquiz] <string>:8: UserWarning: careful"]


def test_a_later_step_in_the_same_process_still_masks_the_earlier_steps_secrets(tmp_path):
    """A perf shard binds with the target's key, then writes the run's report without being given it again."""
    script = f"""
from serve_app.jobs.output import print_to_job_log
print_to_job_log({str(tmp_path)!r}, "shard 0", secrets=[{KEY!r}])
print_to_job_log({str(tmp_path)!r}, "report")
print("still holding {KEY}")
"""
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished
    assert (tmp_path / JOB_LOG).read_text().splitlines() == ["[report] still holding ***"]
