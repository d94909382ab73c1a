import numpy as np
import pandas as pd
import pytest

from helpers import evaluation


def test_metrics_match_a_hand_count():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    probs = np.array([0.9, 0.8, 0.2, 0.1, 0.6, 0.3, 0.4, 0.7])  # TP 3, FN 1, FP 1, TN 3
    m = evaluation.classification_metrics(labels, probs)
    ci = m.pop("accuracy_ci95")
    assert m == pytest.approx({"accuracy": 6 / 8, "f1": 0.75, "precision": 0.75, "recall": 0.75, "n": 8})
    assert ci[0] < 6 / 8 < ci[1]
    matrix = evaluation.confusion(labels, probs)
    assert matrix.loc["positive", "negative"] == 1 and matrix.loc["negative", "positive"] == 1
    assert matrix.values.sum() == 8


def test_confident_errors_are_the_surest_mistakes_first():
    frame = pd.DataFrame({"text": [f"review {i}<br />more" for i in range(5)], "label": [1, 0, 1, 0, 1]})
    probs = np.array([0.05, 0.9, 0.6, 0.55, 0.3])  # wrong: 0 (conf .95), 1 (.9), 3 (.55), 4 (.7)
    table = evaluation.prediction_table(frame, probs)
    errors = evaluation.confident_errors(table, k=3)
    assert list(errors.index) == [0, 1, 4]
    assert list(errors["confidence"]) == [0.95, 0.9, 0.7]
    assert errors.loc[0, "label"] == "positive" and errors.loc[0, "predicted"] == "negative"
    assert "<br />" not in errors.loc[0, "text"]


def test_predictions_come_back_in_input_order(tiny_teacher, tiny_tokenizer, sample):
    from helpers import tokens
    from helpers.config import resolve_params
    from helpers.training import TrainSettings

    frame = sample["test"].head(24)
    ds = tokens.tokenize_splits({"test": frame}, tiny_tokenizer, 128)["test"]
    settings = TrainSettings.from_params(resolve_params("smoke", {"eval_batch_size": 5}))
    batched = evaluation.predict_proba(tiny_teacher, ds, tiny_tokenizer, settings)
    one_by_one = [evaluation.predict_proba(tiny_teacher, ds.select([i]), tiny_tokenizer, settings)[0] for i in (0, 7, 23)]
    np.testing.assert_allclose(batched[[0, 7, 23]], one_by_one, atol=1e-5)
    assert batched.shape == (24,)


@pytest.mark.parametrize("accuracy, n, expected", [
    (0.5, 100, (0.4038, 0.5962)),  # 50 of 100: the Wilson interval as published tables give it
    (1.0, 10, (0.7225, 1.0)),      # 10 of 10: not the useless [1, 1] of accuracy +- 1.96 standard errors
    (0.0, 10, (0.0, 0.2775)),
])
def test_the_accuracy_interval_is_wilsons(accuracy, n, expected):
    assert evaluation.accuracy_interval(accuracy, n) == pytest.approx(list(expected), abs=1e-4)
