"""Cold start and idle footprint: `serve run configs/serve.yaml` as a user runs it, timed until /health answers,
then the resident memory of every Ray process it started (GCS, raylet, agents, controller, proxy, replica).

Prints a table and writes JSON to --out. Port 9000 (from configs/serve.yaml) must be free.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serve_app.simulator.process import wait_until_healthy

REPO = Path(__file__).resolve().parents[1]


def ray_processes(exclude: set[int]) -> dict[int, tuple[str, int]]:
    """pid -> (command, resident KiB) of Ray's processes that were not running before."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if "ray" not in command and "serve" not in command:
            continue
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        found[int(entry.name)] = (command[:80], rss)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle-s", type=float, default=10.0, help="idle time before memory is read")
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "service_footprint.json"))
    options = parser.parse_args()

    before = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    workdir = tempfile.mkdtemp(prefix="footprint_")
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("serve")), "run", str(REPO / "configs" / "serve.yaml")],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_until_healthy("http://127.0.0.1:9000/health", 300, process)
        cold_start = time.perf_counter() - started
        time.sleep(options.settle_s)
        processes = ray_processes(before | {os.getpid()})
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(60)
    total_mib = sum(rss for _, rss in processes.values()) / 1024
    print("\n## Service footprint (serve run configs/serve.yaml)")
    print(f"{'cold start to healthy':>32}  {cold_start:.1f} s")
    print(f"{'idle resident memory, all Ray':>32}  {total_mib:.0f} MiB in {len(processes)} processes")
    for command, rss in sorted(processes.values(), key=lambda item: -item[1])[:8]:
        print(f"{rss / 1024:>30.0f} MiB  {command}")
    report = {"cold_start_s": cold_start, "idle_rss_mib": total_mib, "processes": len(processes)}
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {options.out}")


if __name__ == "__main__":
    main()
