import json

from serve_app.compare.reviews import review_file, sample_scores
from tests.unit.compare.samples import write_reviews


def test_the_main_score_of_each_sample_is_read_from_evalscopes_review_file(tmp_path):
    write_reviews(tmp_path, "gsm8k", "main", {0: 1.0, 1: 0.0, "q-7": True})
    path = review_file(tmp_path, "gsm8k", "main")
    assert path == tmp_path / "reviews" / "m" / "gsm8k_main.jsonl"
    assert sample_scores(path) == {"0": 1.0, "1": 0.0, "q-7": 1.0}  # acc, not the other metric


def test_repeated_generations_of_a_sample_count_as_their_mean(tmp_path):
    write_reviews(tmp_path, "gsm8k", "main", {0: [1.0, 0.0, 1.0, 1.0], 1: [0.0, 0.0, 0.0, 0.0]})
    assert sample_scores(review_file(tmp_path, "gsm8k", "main")) == {"0": 0.75, "1": 0.0}


def test_a_missing_file_has_no_samples_and_a_sample_without_a_number_is_left_out(tmp_path):
    assert review_file(tmp_path, "gsm8k", "main") is None and sample_scores(None) == {}
    write_reviews(tmp_path, "iquiz", "IQ", {0: 1.0})
    path = review_file(tmp_path, "iquiz", "IQ")
    broken = json.loads(path.read_text())
    broken["sample_score"]["sample_id"] = broken["sample_score"]["group_id"] = 1
    broken["sample_score"]["score"]["value"] = {"acc": None}
    path.write_text(path.read_text() + json.dumps(broken) + "\n")
    assert sample_scores(path) == {"0": 1.0}
