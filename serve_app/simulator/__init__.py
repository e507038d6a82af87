"""OpenAI-compatible simulator: answers the shipped sample datasets correctly, with configurable latency."""

from serve_app.simulator.answers import load_answer_key
from serve_app.simulator.server import (
    DEFAULT_DATASETS_DIR,
    SimulatorConfig,
    build_simulator_app,
    run_simulator,
)

__all__ = [
    "DEFAULT_DATASETS_DIR",
    "SimulatorConfig",
    "build_simulator_app",
    "load_answer_key",
    "run_simulator",
]
