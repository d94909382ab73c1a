"""Stage 4: predictions on the test split, metrics, and the reviews the model gets most wrong."""
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from helpers.data import LABEL_NAMES
from helpers.training import predict_on_device


def predict_proba(model, dataset, tokenizer, settings):
    """P(positive) for every review of a tokenized dataset, in order, on the best device."""
    return positive_probability(predict_on_device(model, dataset, tokenizer, settings))


def positive_probability(logits):
    return torch.softmax(torch.from_numpy(logits), dim=-1)[:, 1].numpy()


def classification_metrics(labels, prob_positive):
    """Accuracy, F1, precision and recall of the positive class, and the number of reviews."""
    predicted = (np.asarray(prob_positive) >= 0.5).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="binary", zero_division=0)
    return {"accuracy": float(accuracy_score(labels, predicted)), "f1": float(f1),
            "precision": float(precision), "recall": float(recall), "n": int(len(labels))}


def confusion(labels, prob_positive):
    """The confusion matrix as a labelled frame (rows: true label, columns: predicted)."""
    predicted = (np.asarray(prob_positive) >= 0.5).astype(int)
    names = [LABEL_NAMES[0], LABEL_NAMES[1]]
    matrix = confusion_matrix(labels, predicted, labels=[0, 1])
    return pd.DataFrame(matrix, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def prediction_table(frame, prob_positive):
    """The test reviews with the model's prediction and its confidence in that prediction."""
    table = frame[["text", "label"]].copy()
    table["prob_positive"] = prob_positive
    table["predicted"] = (table["prob_positive"] >= 0.5).astype(int)
    table["confidence"] = np.where(table["predicted"] == 1, table["prob_positive"], 1 - table["prob_positive"])
    return table


def wrong_predictions(predictions):
    """The rows of a prediction table the model got wrong, the surest mistake first (ties in test order)."""
    wrong = predictions[predictions["predicted"] != predictions["label"]]
    return wrong.sort_values("confidence", ascending=False, kind="stable")


def confident_errors(predictions, k, preview_chars=300):
    """The k wrong predictions the model was surest of, with a preview of each review."""
    worst = wrong_predictions(predictions).head(k).copy()
    worst["text"] = worst["text"].str.replace("<br />", " ", regex=False).str.slice(0, preview_chars)
    worst["label"] = worst["label"].map(LABEL_NAMES)
    worst["predicted"] = worst["predicted"].map(LABEL_NAMES)
    return worst[["label", "predicted", "confidence", "text"]].round({"confidence": 3})
