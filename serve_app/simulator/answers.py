"""Answer key of the shipped sample datasets (examples/datasets), used by the simulator to answer correctly."""

from __future__ import annotations

import json
from pathlib import Path

# Dataset directory -> how the correct final answer is read from one jsonl record.
_GSM8K_DELIM = "####"


def _gsm8k_answer(record: dict) -> str:
    return str(record["answer"]).split(_GSM8K_DELIM)[-1].strip()


def _choice_answer(record: dict) -> str:
    return str(record["answer"]).strip()


_READERS = {
    "gsm8k": _gsm8k_answer,
    "iquiz": _choice_answer,
    "ceval": _choice_answer,
}


def load_answer_key(datasets_dir: Path) -> dict[str, str]:
    """Map every question text (stripped) of the shipped gsm8k/iquiz/ceval samples to its final answer.

    The answer is the number for gsm8k and the letter (A-D) for the multiple-choice sets. Every split is
    read (few-shot splits too). A dataset directory that does not exist is skipped.
    """
    datasets_dir = Path(datasets_dir)
    key: dict[str, str] = {}
    for name, read in _READERS.items():
        root = datasets_dir / name
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.jsonl")):
            with path.open(encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    record = json.loads(line)
                    question = str(record.get("question", "")).strip()
                    if question:
                        key[question] = read(record)
    return key
