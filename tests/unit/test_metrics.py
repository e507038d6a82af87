"""Metric labels stay bounded whatever model names callers send."""

from serve_app.metrics import LABEL_MAX_CHARS, OTHER_LABEL, LabelBudget


def test_model_labels_are_cut_and_new_ones_beyond_the_budget_become_other():
    labels = LabelBudget(max_values=2)
    assert labels.label("qwen") == "qwen"
    assert labels.label("x" * 300) == "x" * LABEL_MAX_CHARS
    assert labels.label("third-model") == OTHER_LABEL
    # Models already labelled keep their own series.
    assert labels.label("qwen") == "qwen" and labels.label("x" * 200) == "x" * LABEL_MAX_CHARS
