from serve_app.compare.evals import LISTED_UNPAIRED, compare_scores
from tests.unit.compare.samples import eval_result

RIGHT, WRONG = 1.0, 0.0


def test_a_candidate_right_where_the_baseline_was_wrong_is_better_per_dataset_and_subset(tmp_path):
    baseline = eval_result(tmp_path / "b", {"iquiz": {"IQ": {i: WRONG for i in range(30)},
                                                      "EQ": {i: RIGHT for i in range(30)}}})
    candidate = eval_result(tmp_path / "c", {"iquiz": {"IQ": {i: RIGHT for i in range(30)},
                                                       "EQ": {i: RIGHT for i in range(30)}}})
    rows = {(row.dataset, row.subset): row for row in compare_scores(baseline, candidate, str(tmp_path / "b"),
                                                                     str(tmp_path / "c"))}
    assert list(rows) == [("iquiz", None), ("iquiz", "IQ"), ("iquiz", "EQ")]
    pooled = rows[("iquiz", None)]
    assert (pooled.paired, pooled.baseline_score, pooled.candidate_score) == (60, 0.5, 1.0)
    assert pooled.verdict == "better" and pooled.ci_low > 0
    assert rows[("iquiz", "IQ")].verdict == "better"
    assert rows[("iquiz", "EQ")].verdict == "no significant change" and rows[("iquiz", "EQ")].difference == 0


def test_identical_runs_show_no_significant_change(tmp_path):
    samples = {"gsm8k": {"main": {i: float(i % 3 == 0) for i in range(12)}}}
    baseline, candidate = eval_result(tmp_path / "b", samples), eval_result(tmp_path / "c", samples)
    (pooled, main) = compare_scores(baseline, candidate, str(tmp_path / "b"), str(tmp_path / "c"))
    assert pooled.verdict == main.verdict == "no significant change"
    assert (pooled.ci_low, pooled.ci_high, pooled.unpaired.baseline, pooled.unpaired.candidate) == (0, 0, 0, 0)


def test_unpaired_samples_are_counted_and_the_first_listed(tmp_path):
    baseline = eval_result(tmp_path / "b", {"gsm8k": {"main": {f"q{i}": RIGHT for i in range(40)}}})
    candidate = eval_result(tmp_path / "c", {"gsm8k": {"main": {f"q{i}": RIGHT for i in range(10, 45)}}})
    pooled, main = compare_scores(baseline, candidate, str(tmp_path / "b"), str(tmp_path / "c"))
    assert main.paired == 30
    assert (main.unpaired.baseline, main.unpaired.candidate) == (10, 5)
    assert main.unpaired.baseline_ids == [f"q{i}" for i in range(10)]
    assert main.unpaired.candidate_ids == [f"q{i}" for i in range(40, 45)]
    assert pooled.unpaired.baseline_ids[0] == "main/q0"  # pooled ids say their subset


def test_only_the_first_unpaired_ids_are_listed_and_no_pair_is_not_comparable(tmp_path):
    baseline = eval_result(tmp_path / "b", {"gsm8k": {"main": {i: RIGHT for i in range(100)}}})
    candidate = eval_result(tmp_path / "c", {"gsm8k": {"main": {i: RIGHT for i in range(100, 150)}}})
    _, main = compare_scores(baseline, candidate, str(tmp_path / "b"), str(tmp_path / "c"))
    assert main.paired == 0 and main.verdict == "not comparable" and main.difference is None
    assert main.unpaired.baseline == 100 and len(main.unpaired.baseline_ids) == LISTED_UNPAIRED


def test_a_dataset_only_one_job_scored_has_no_row(tmp_path):
    baseline = eval_result(tmp_path / "b", {"gsm8k": {"main": {0: RIGHT}}, "iquiz": {"IQ": {0: RIGHT}}})
    candidate = eval_result(tmp_path / "c", {"gsm8k": {"main": {0: RIGHT}}})
    rows = compare_scores(baseline, candidate, str(tmp_path / "b"), str(tmp_path / "c"))
    assert {row.dataset for row in rows} == {"gsm8k"}
