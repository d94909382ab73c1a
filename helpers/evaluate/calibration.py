"""Are the probabilities right? Calibration error, reliability diagrams and temperature scaling.

A model is calibrated when, of the reviews it calls positive with 80% confidence, 80% are
positive. Fine-tuned transformers tend to be overconfident (Guo et al. 2017, "On Calibration
of Modern Neural Networks"); temperature scaling fixes most of it with one number fitted on
the validation split: the logits are divided by T, which changes no prediction (the larger
logit stays the larger) and only their confidence.

    temperature = fit_temperature(val_logits, val_labels)   # the stage writes it to its calibration.json
    probabilities = positive_probability(logits / temperature)   # where predictions are made
    fold_temperature(model, temperature)   # an exported copy (helpers.export): calibrated logits for every consumer

The stages keep their saved models as trained and the temperature beside them; only a copy that leaves
the project (the ONNX export) has it folded into its classifier.
"""
import math

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from helpers.core.files import read_json
from helpers.core.models import classifier_layer, load_trained
from helpers.core.sentiment import predicted_labels
from helpers.runs import layout

CALIBRATION_BINS = 15  # Guo et al.'s choice, so the figures compare with the literature
TEMPERATURE_BOUNDS = (0.01, 100.0)  # the search range of T; beyond it the logits are all but constant or hard 0/1
TEMPERATURE_KEY = "calibration_temperature"  # the model.config attribute recording the folded temperature


def reliability_table(prob_positive, labels, bins=CALIBRATION_BINS):
    """Per confidence bin (`bins` equal-width bins over [0, 1], each holding (lower, upper]), of
    the bins that hold any review: the bin's range, how many reviews fall in it, their mean
    confidence and the accuracy of their predictions. What a reliability diagram draws.

    Confidence is the probability of the predicted class, max(p, 1 - p), so with two classes
    only the bins above 0.5 are ever filled.
    """
    prob_positive, labels = np.asarray(prob_positive, dtype=float), np.asarray(labels)
    predicted = predicted_labels(prob_positive)
    confidence = np.where(predicted == 1, prob_positive, 1 - prob_positive)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # searchsorted(side="left") puts a confidence equal to an edge in the bin below it: bins are (lower, upper]
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    reviews = pd.DataFrame({"bin": index, "confidence": confidence, "correct": predicted == labels})
    table = reviews.groupby("bin").agg(count=("correct", "size"), mean_confidence=("confidence", "mean"),
                                       accuracy=("correct", "mean"))
    table.insert(0, "lower", edges[table.index])
    table.insert(1, "upper", edges[table.index + 1])
    return table.reset_index(drop=True)


def table_calibration_error(table):
    """ECE from a reliability table: the bins' |accuracy - mean confidence|, weighted by their share of reviews."""
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["accuracy"] - table["mean_confidence"]).abs()).sum())


def expected_calibration_error(prob_positive, labels, bins=CALIBRATION_BINS):
    """Expected calibration error over 15 equal-width bins (by default) of the predicted class's confidence.

    ECE = sum over bins of (n_bin / n) * |accuracy_bin - mean_confidence_bin|, where a review's
    confidence is max(p, 1 - p) and its prediction is positive when p >= 0.5. 0 is perfectly calibrated.
    """
    return table_calibration_error(reliability_table(prob_positive, labels, bins))


def fit_temperature(val_logits, val_labels):
    """The temperature T > 0 minimising the negative log-likelihood of softmax(logits / T) on the
    validation split: one scalar, found by a bounded search on log T (deterministic).

    T > 1 softens an overconfident model, T < 1 sharpens an underconfident one. A model that
    separates its validation reviews perfectly has no optimum (the likelihood keeps rising as T
    falls): T then comes out far below 1, wherever the loss stops changing in floating point,
    and means only that the validation split is too small or too easy to calibrate on.
    """
    logits = np.asarray(val_logits, dtype=np.float64)
    labels = np.asarray(val_labels)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"expected logits of shape (n, classes) and n labels; got {logits.shape} and {labels.shape}")

    def nll(log_t):
        log_prob = log_softmax(logits / math.exp(log_t), axis=1)
        return -log_prob[np.arange(len(labels)), labels].mean()

    low, high = (math.log(t) for t in TEMPERATURE_BOUNDS)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def fold_temperature(model, temperature):
    """Divide the final classification layer's weights and bias by `temperature`, in place.

    The model's logits become logits / T, so whatever reads it (ONNX Runtime, transformers.pipeline on an
    exported copy) gets the calibrated ones. The temperature is multiplied into
    `model.config.calibration_temperature` (saved with the config), so raw logits stay
    recoverable: raw = calibrated * recorded_temperature(model.config). Fold before quantizing:
    a quantized classifier is no longer a torch.nn.Linear and is refused.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number; got {temperature!r}")
    classifier = classifier_layer(model)
    with torch.no_grad():
        classifier.weight.div_(temperature)
        if classifier.bias is not None:
            classifier.bias.div_(temperature)
    setattr(model.config, TEMPERATURE_KEY, recorded_temperature(model.config) * temperature)
    return model


def recorded_temperature(config):
    """The temperature folded into a model so far (1.0 for a model never calibrated)."""
    return float(getattr(config, TEMPERATURE_KEY, 1.0))


def load_with_temperature(run, who):
    """A run's `who` ('teacher' or 'student') as its stage saved it, and the temperature its logits still need
    dividing by to be calibrated: the one its stage fitted, less any the model already holds (its config records
    it; the stages save their models raw, so normally all of it). The demo, helpers.predict and the export use it."""
    model = load_trained(run.require(layout.MODEL_FOLDERS[who]))
    fitted = read_json(run.require(layout.CALIBRATION_FILES[who]))["temperature"]
    return model, fitted / recorded_temperature(model.config)
