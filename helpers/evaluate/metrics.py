"""Every metric: validation scores, test metrics with intervals, the per-set table, the confusion matrix, the
surest mistakes. Predictions come from helpers.train.prediction; paired differences from helpers.evaluate.paired."""
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from helpers.core.sentiment import LABEL_NAMES, accuracy_interval, predicted_labels
from helpers.data.imdb import clean_review


def classification_metrics(labels, prob_positive):
    """Accuracy with its 95% interval, F1, precision and recall of the positive class, and the number of reviews."""
    predicted = predicted_labels(prob_positive)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="binary", zero_division=0)
    accuracy = float(accuracy_score(labels, predicted))
    return {"accuracy": accuracy, "accuracy_ci95": accuracy_interval(accuracy, len(labels)), "f1": float(f1),
            "precision": float(precision), "recall": float(recall), "n": int(len(labels))}


def score_sets(frames, probs):
    """{set: {model: metrics}} from {set: {model: P(positive) per review}} and {set: frame with the labels}."""
    return {name: {model: classification_metrics(frames[name]["label"].to_numpy(), p) for model, p in by_model.items()}
            for name, by_model in probs.items()}


def sets_table(scores):
    """{set: {model: metrics}} as a table: per test set and model, its reviews, accuracy, 95% interval and F1."""
    rows = [{"test set": name, "model": model, "reviews": m["n"], "accuracy": m["accuracy"],
             "95% low": m["accuracy_ci95"][0], "95% high": m["accuracy_ci95"][1], "f1": m["f1"]}
            for name, by_model in scores.items() for model, m in by_model.items()]
    return pd.DataFrame(rows).set_index(["test set", "model"]).round(4) if rows else pd.DataFrame()


def confusion(labels, prob_positive):
    """The confusion matrix as a labelled frame (rows: true label, columns: predicted)."""
    names = [LABEL_NAMES[0], LABEL_NAMES[1]]
    matrix = confusion_matrix(labels, predicted_labels(prob_positive), labels=[0, 1])
    return pd.DataFrame(matrix, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def prediction_table(frame, prob_positive):
    """The test reviews with the model's prediction and its confidence in that prediction."""
    table = frame[["text", "label"]].assign(prob_positive=prob_positive, predicted=predicted_labels(prob_positive))
    table["confidence"] = np.where(table["predicted"] == 1, table["prob_positive"], 1 - table["prob_positive"])
    return table


def wrong_predictions(predictions):
    """The rows of a prediction table the model got wrong, the surest mistake first (ties in test order)."""
    wrong = predictions[predictions["predicted"] != predictions["label"]]
    return wrong.sort_values("confidence", ascending=False, kind="stable")


def confident_errors(predictions, k, preview_chars=300):
    """The k wrong predictions the model was surest of, with a preview of each review."""
    worst = wrong_predictions(predictions).head(k)
    worst = worst.assign(text=worst["text"].map(clean_review).str.slice(0, preview_chars),
                         label=worst["label"].map(LABEL_NAMES), predicted=worst["predicted"].map(LABEL_NAMES))
    return worst[["label", "predicted", "confidence", "text"]].round({"confidence": 3})
