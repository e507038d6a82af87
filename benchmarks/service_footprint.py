"""Cold start and idle footprint: `serve run` of configs/serve.yaml as a user runs it, timed until /health answers,
then the memory of every process of the service (GCS, raylet, agents, dashboard, controller, proxy, replicas).

The memory is the proportional set size (PSS, /proc/<pid>/smaps_rollup): a page that n processes share counts
1/n in each, so the sum counts the pages shared among the service's processes once, where resident sizes would
count them once per process. The service's processes are exactly those of the session `serve run` is started in:
Ray starts its daemons and workers without leaving it. The config is copied with a free port (only the port and
the host, 127.0.0.1, change), and `serve run --address local` starts a Ray cluster of its own rather than joining
one running on this machine. Prints a table and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from harness import REPO

from serve_app.simulator.process import free_port, wait_until_healthy


def session_processes(session: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(ProcessLookupError):  # gone meanwhile
                if os.getsid(int(entry.name)) == session:
                    pids.append(int(entry.name))
    return pids


def pss_kib(pid: int) -> int:
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:80]


def stop(leader: subprocess.Popen) -> None:
    """Ctrl-C to `serve run` (it shuts Serve and its Ray cluster down), then SIGKILL to whatever of its session is
    left, by pid: Ray's actors run in process groups of their own."""
    os.killpg(leader.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        leader.wait(60)
    for pid in session_processes(leader.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    leader.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle-s", type=float, default=10.0, help="idle time before memory is read")
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "service_footprint.json"))
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="footprint_"))
    port = free_port()
    config = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    config["http_options"].update(host="127.0.0.1", port=port)
    (workdir / "serve.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("serve")), "run", "--address", "local", str(workdir / "serve.yaml")],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        # A shell's background job inherits SIGINT ignored; serve run must take Ctrl-C to shut down.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/health", 300, process)
        cold_start = time.perf_counter() - started
        time.sleep(options.settle_s)
        processes = {}
        for pid in session_processes(process.pid):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a worker that exited meanwhile
                processes[pid] = (command_line(pid), pss_kib(pid))
    finally:
        stop(process)
    total_mib = sum(pss for _, pss in processes.values()) / 1024
    print(f"\n## Service footprint (serve run configs/serve.yaml, {os.cpu_count()} cores)")
    print(f"{'cold start to healthy':>32}  {cold_start:.1f} s")
    print(f"{'idle PSS, all its processes':>32}  {total_mib:.0f} MiB in {len(processes)} processes")
    for command, pss in sorted(processes.values(), key=lambda item: -item[1])[:8]:
        print(f"{pss / 1024:>30.0f} MiB  {command}")
    report = {"cold_start_s": cold_start, "idle_pss_mib": total_mib, "processes": len(processes)}
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {options.out}")


if __name__ == "__main__":
    main()
