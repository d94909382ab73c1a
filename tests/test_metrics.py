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
