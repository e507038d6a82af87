import numpy as np
import pytest

from serve_app.compare.bootstrap import paired_bootstrap


def test_an_obviously_better_candidate_is_better_and_a_worse_one_worse():
    baseline = np.array([1.0] * 30 + [0.0] * 70)
    candidate = np.array([1.0] * 90 + [0.0] * 10)
    better = paired_bootstrap(baseline, candidate)
    assert better.verdict == "better" and better.difference == pytest.approx(0.6)
    assert 0 < better.low < 0.6 < better.high
    assert paired_bootstrap(candidate, baseline).verdict == "worse"


def test_identical_runs_have_no_significant_change_and_an_interval_of_zero():
    scores = np.array([1.0, 0.0, 1.0, 1.0, 0.0] * 20)
    interval = paired_bootstrap(scores, scores)
    assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert interval.verdict == "no significant change"


def test_a_small_noisy_difference_is_not_significant():
    rng = np.random.default_rng(7)
    baseline = rng.integers(0, 2, 40).astype(float)
    candidate = baseline.copy()
    candidate[:3] = 1 - candidate[:3]  # three of forty samples flip
    assert paired_bootstrap(baseline, candidate).verdict == "no significant change"


def test_the_interval_is_the_same_on_every_call_and_covers_the_truth_with_many_samples():
    rng = np.random.default_rng(1)
    baseline = rng.random(20_000)  # more samples than one chunk of resamples holds
    candidate = baseline + 0.01 + rng.normal(0, 0.05, baseline.size)
    first, second = paired_bootstrap(baseline, candidate), paired_bootstrap(baseline, candidate)
    assert first == second
    assert first.low < 0.01 < first.high and first.verdict == "better"


def test_no_paired_sample_is_refused():
    with pytest.raises(ValueError, match="at least one paired sample"):
        paired_bootstrap(np.array([]), np.array([]))
