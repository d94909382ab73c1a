"""Prediction and stage 4's metrics: logits for a dataset, test metrics, the reviews the model gets most wrong.

Validation during training, the test predictions, the teacher's logits for distillation and the
CPU timings all predict through `predict_logits`.
"""
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from helpers.accuracy import DECISION_THRESHOLD, accuracy_interval, predicted_labels  # noqa: F401 (re-exported)
from helpers.batching import make_loader, token_lengths
from helpers.data import LABEL_NAMES
from helpers.accelerators import make_accelerator, plain_model
from helpers.progress import progress


def forward(model, batch):
    """The model's logits for a batch (token type ids are left out: single reviews are one segment)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def predict_logits(model, dataset, tokenizer, batch_size, accelerator=None, desc="predicting"):
    """Logits for every review of `dataset`, returned in the dataset's order.

    Reviews are predicted shortest first, so each batch pads to a length close to its own
    reviews' instead of to the longest review in a random batch; the logits are put back
    in order at the end. With an accelerator, the batches go to its devices and gathering
    across processes drops the duplicates that even batching adds, so every review is
    counted once; without one, the model runs where it is (the CPU timings).
    """
    order = np.argsort(token_lengths(dataset), kind="stable")
    loader = make_loader(dataset.select(order), tokenizer, batch_size)
    gather, show = (lambda logits: logits), True
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader)
        gather, show = accelerator.gather_for_metrics, accelerator.is_local_main_process
    model.eval()
    chunks = []
    with torch.inference_mode():
        for batch in progress(loader, desc=desc, disable=not show, leave=False):
            chunks.append(gather(forward(model, batch).float()).cpu())
    logits = torch.cat(chunks).numpy()
    in_order = np.empty_like(logits)
    in_order[order] = logits
    return in_order


def predict_on_device(model, dataset, tokenizer, settings, desc="predicting"):
    """`predict_logits` on the best device (all of them, in a multi-process launch) in the run's
    precision; `model` comes back plain (`plain_model`), ready to be timed, quantized or saved."""
    accelerator = make_accelerator(settings)
    try:
        return predict_logits(accelerator.prepare(model), dataset, tokenizer, settings.eval_batch_size, accelerator,
                              desc=desc)
    finally:
        plain_model(model)


def validation_scores(logits, labels):
    """Accuracy and mean cross-entropy of logits against labels (the loop's per-epoch validation)."""
    labels = np.asarray(labels)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {"accuracy": float((logits.argmax(-1) == labels).mean()), "loss": loss}


def predict_proba(model, dataset, tokenizer, settings):
    """P(positive) for every review of a tokenized dataset, in order, on the best device."""
    return positive_probability(predict_on_device(model, dataset, tokenizer, settings))


def positive_probability(logits):
    return torch.softmax(torch.from_numpy(logits), dim=-1)[:, 1].numpy()


def classification_metrics(labels, prob_positive):
    """Accuracy with its 95% interval, F1, precision and recall of the positive class, and the number of reviews."""
    predicted = predicted_labels(prob_positive)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="binary", zero_division=0)
    accuracy = float(accuracy_score(labels, predicted))
    return {"accuracy": accuracy, "accuracy_ci95": accuracy_interval(accuracy, len(labels)), "f1": float(f1),
            "precision": float(precision), "recall": float(recall), "n": int(len(labels))}


def confusion(labels, prob_positive):
    """The confusion matrix as a labelled frame (rows: true label, columns: predicted)."""
    predicted = predicted_labels(prob_positive)
    names = [LABEL_NAMES[0], LABEL_NAMES[1]]
    matrix = confusion_matrix(labels, predicted, labels=[0, 1])
    return pd.DataFrame(matrix, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def prediction_table(frame, prob_positive):
    """The test reviews with the model's prediction and its confidence in that prediction."""
    table = frame[["text", "label"]].copy()
    table["prob_positive"] = prob_positive
    table["predicted"] = predicted_labels(table["prob_positive"])
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
