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


# evalscope's default judge prompt (evalscope.metrics.judge.llm_judge) sets the reference and the predicted answer
# apart with these headings, and its output contract asks for one JSON object with a "verdict" key.
_REFERENCE, _PREDICTED, _PREDICTED_END = "[Reference Answer]", "[Predicted Answer]", "Evaluate the model's answer"
JUDGE_VERDICTS = ("fair", "harsh")


def judge_verdict(prompt: str, verdicts: str) -> str | None:
    """The simulator's reply to a prompt of evalscope's LLM judge ({"verdict": "A"} correct, "B" incorrect), or
    None for any other prompt. `verdicts`: fair grades A when the predicted answer contains the reference one;
    harsh always grades B, so a test can tell a judge's score from a rule's."""
    if '"verdict"' not in prompt or _REFERENCE not in prompt or _PREDICTED not in prompt:
        return None
    reference = prompt.split(_REFERENCE, 1)[1].split(_PREDICTED, 1)[0].strip()
    predicted = prompt.split(_PREDICTED, 1)[1].split(_PREDICTED_END, 1)[0]
    correct = verdicts == "fair" and bool(reference) and reference in predicted
    return json.dumps({"verdict": "A" if correct else "B"})
