import numpy as np
import pandas as pd
import pytest

from helpers.core.sentiment import accuracy_interval
from helpers.evaluate import metrics


def test_metrics_match_a_hand_count():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    probs = np.array([0.9, 0.8, 0.2, 0.1, 0.6, 0.3, 0.4, 0.7])  # TP 3, FN 1, FP 1, TN 3
    m = metrics.classification_metrics(labels, probs)
    ci = m.pop("accuracy_ci95")
    assert m == pytest.approx({"accuracy": 6 / 8, "f1": 0.75, "precision": 0.75, "recall": 0.75, "n": 8})
    assert ci[0] < 6 / 8 < ci[1]
    matrix = metrics.confusion(labels, probs)
    assert matrix.loc["positive", "negative"] == 1 and matrix.loc["negative", "positive"] == 1
    assert matrix.values.sum() == 8


def test_confident_errors_are_the_surest_mistakes_first():
    frame = pd.DataFrame({"text": [f"review {i}<br />more" for i in range(5)], "label": [1, 0, 1, 0, 1]})
    probs = np.array([0.05, 0.9, 0.6, 0.55, 0.3])  # wrong: 0 (conf .95), 1 (.9), 3 (.55), 4 (.7)
    table = metrics.prediction_table(frame, probs)
    errors = metrics.confident_errors(table, k=3)
    assert list(errors.index) == [0, 1, 4]
    assert list(errors["confidence"]) == [0.95, 0.9, 0.7]
    assert errors.loc[0, "label"] == "positive" and errors.loc[0, "predicted"] == "negative"
    assert "<br />" not in errors.loc[0, "text"]


@pytest.mark.parametrize("accuracy, n, expected", [
    (0.5, 100, (0.4038, 0.5962)),  # 50 of 100: the Wilson interval as published tables give it
    (1.0, 10, (0.7225, 1.0)),      # 10 of 10: not the useless [1, 1] of accuracy +- 1.96 standard errors
    (0.0, 10, (0.0, 0.2775)),
])
def test_the_accuracy_interval_is_wilsons(accuracy, n, expected):
    assert accuracy_interval(accuracy, n) == pytest.approx(list(expected), abs=1e-4)


def test_the_per_set_table_has_a_row_per_set_and_model_with_its_interval():
    labels = np.array([1, 0, 1, 0, 1, 1])
    frames = {"test": pd.DataFrame({"label": labels}), "short": pd.DataFrame({"label": labels[:4]})}
    probs = {"test": {"teacher": np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.6])}, "short": {"teacher": np.array([0.9, 0.1, 0.8, 0.2])}}
    table = metrics.sets_table(metrics.score_sets(frames, probs))
    assert list(table.index) == [("test", "teacher"), ("short", "teacher")]
    assert table.loc[("test", "teacher"), "accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert table.loc[("short", "teacher"), ["reviews", "accuracy"]].tolist() == [4, 1.0]
    assert table.loc[("test", "teacher"), "95% low"] < 4 / 6 < table.loc[("test", "teacher"), "95% high"]
    assert metrics.sets_table({}).empty


def _answers(n, only_a, only_b, both_right):
    """Labels and two models' P(positive): `only_a` reviews only a gets right, `only_b` only b, `both_right` both."""
    labels = np.ones(n, dtype=int)
    right_a = np.r_[np.ones(only_a), np.zeros(only_b), np.ones(both_right), np.zeros(n - only_a - only_b - both_right)]
    right_b = np.r_[np.zeros(only_a), np.ones(only_b), np.ones(both_right), np.zeros(n - only_a - only_b - both_right)]
    return labels, np.where(right_a == 1, 0.9, 0.1), np.where(right_b == 1, 0.8, 0.3)


def test_a_paired_difference_matches_a_hand_count_and_mcnemars_exact_test():
    from helpers.evaluate.paired import paired_difference

    labels, a, b = _answers(10, only_a=3, only_b=1, both_right=4)
    stats = paired_difference(labels, a, b)
    assert stats["difference"] == pytest.approx(0.2) and (stats["only_a_right"], stats["only_b_right"], stats["n"]) == (3, 1, 10)
    assert stats["p_mcnemar"] == pytest.approx(0.625)  # two-sided binomial: P(X <= 1 or X >= 3 | 4, 1/2) = 10/16
    assert stats["ci95"][0] <= 0.2 <= stats["ci95"][1]
    assert paired_difference(labels, a, b) == stats  # seeded


def test_the_paired_interval_is_the_bootstrap_of_the_differences_and_narrower_than_two_separate_ones():
    from helpers.evaluate.paired import paired_difference, verdict

    labels, a, b = _answers(1000, only_a=30, only_b=15, both_right=800)  # 83.0% against 81.5%, mostly agreeing
    stats = paired_difference(labels, a, b)
    d = np.r_[np.ones(30), -np.ones(15), np.zeros(955)]
    half = 1.959964 * d.std() / np.sqrt(len(d))  # the normal approximation the bootstrap should agree with
    assert stats["ci95"] == pytest.approx([0.015 - half, 0.015 + half], abs=0.002)
    separate = accuracy_interval(0.83, 1000)
    assert stats["ci95"][1] - stats["ci95"][0] < separate[1] - separate[0]  # narrower than even one of the two
    assert verdict(stats) == "beyond noise, a gain" and stats["p_mcnemar"] < 0.05
    labels, a, b = _answers(1000, only_a=12, only_b=10, both_right=800)
    assert verdict(paired_difference(labels, a, b)) == "within noise"
    labels, a, b = _answers(1000, only_a=0, only_b=0, both_right=800)  # the same answers: no difference at all
    assert paired_difference(labels, a, b) | {"ci95": None} == {"difference": 0.0, "ci95": None, "p_mcnemar": 1.0,
                                                                  "only_a_right": 0, "only_b_right": 0, "n": 1000}


def test_paired_comparisons_use_the_reviews_both_models_scored_and_only_the_pairs_present():
    from helpers.evaluate.paired import paired_comparisons, paired_sentence

    labels, a, b = _answers(40, only_a=5, only_b=2, both_right=20)
    copy = np.where(np.arange(40) < 20, b, np.nan)  # a CPU copy scored on half the reviews
    paired = paired_comparisons(labels, {"student": b, "teacher": a, "student_int8": copy})
    assert set(paired) == {"student - teacher", "student_int8 - student"}
    assert paired["student_int8 - student"]["n"] == 20 and paired["student_int8 - student"]["difference"] == 0
    assert paired["student - teacher"]["difference"] == pytest.approx(-3 / 40)
    assert paired_sentence("student_int8 - student", paired["student_int8 - student"]).endswith("20 reviews), within noise")
