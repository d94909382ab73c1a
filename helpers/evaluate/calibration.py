"""Are the probabilities right? Calibration error (with its interval), reliability diagrams, temperature scaling.

Fine-tuned transformers tend to be overconfident (Guo et al. 2017); one temperature T fitted on the validation
split divides the logits, which changes no prediction, only its confidence. The stages keep their models raw
and T in their calibration.json; only the exported copy has it folded into its classifier (`fold_temperature`).
"""
import math

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from helpers.core.files import read_json
from helpers.core.models import classifier_layer, load_trained
from helpers.core.sentiment import positive_probability, predicted_labels
from helpers.runs import layout

CALIBRATION_BINS = 15  # Guo et al.'s choice, so the figures compare with the literature
TEMPERATURE_BOUNDS = (0.01, 100.0)  # the search range of T; beyond it the logits are all but constant or hard 0/1
TEMPERATURE_KEY = "calibration_temperature"  # the model.config attribute recording the folded temperature
ECE_DRAWS = 1000  # bootstrap draws behind ECE's interval


def _binned(prob_positive, labels, bins):
    """Each review's bin (`bins` equal-width bins over [0, 1], each (lower, upper]), its confidence max(p, 1 - p) (only
    bins above 0.5 fill) and whether it was right."""
    prob_positive, labels = np.asarray(prob_positive, dtype=float), np.asarray(labels)
    predicted = predicted_labels(prob_positive)
    confidence = np.where(predicted == 1, prob_positive, 1 - prob_positive)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # searchsorted(side="left") puts a confidence equal to an edge in the bin below it: bins are (lower, upper]
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1), confidence, predicted == labels


def reliability_table(prob_positive, labels, bins=CALIBRATION_BINS):
    """Per filled confidence bin (`_binned`): its range, reviews, mean confidence and accuracy (a reliability diagram)."""
    index, confidence, correct = _binned(prob_positive, labels, bins)
    reviews = pd.DataFrame({"bin": index, "confidence": confidence, "correct": correct})
    table = reviews.groupby("bin").agg(count=("correct", "size"), mean_confidence=("confidence", "mean"),
                                       accuracy=("correct", "mean"))
    edges = np.linspace(0.0, 1.0, bins + 1)
    table.insert(0, "lower", edges[table.index])
    table.insert(1, "upper", edges[table.index + 1])
    return table.reset_index(drop=True)


def table_calibration_error(table):
    """ECE from a reliability table: the bins' |accuracy - mean confidence|, weighted by their share of reviews."""
    return float((table["count"] / table["count"].sum() * (table["accuracy"] - table["mean_confidence"]).abs()).sum())


def expected_calibration_error(prob_positive, labels, bins=CALIBRATION_BINS):
    """ECE = sum over bins of (n_bin / n) * |accuracy_bin - mean_confidence_bin| (`_binned`); 0 is perfectly calibrated."""
    return table_calibration_error(reliability_table(prob_positive, labels, bins))


def ece_interval(prob_positive, labels, bins=CALIBRATION_BINS, draws=ECE_DRAWS, seed=0):
    """The 95% interval of `expected_calibration_error` from a seeded bootstrap of the reviews (`draws` resamples)."""
    index, confidence, correct = _binned(prob_positive, labels, bins)
    rng, n = np.random.default_rng(seed), len(index)
    # per bin, sum(correct - confidence) = n_bin * (accuracy - mean confidence)
    eces = [np.abs(np.bincount(index[drawn], correct[drawn] - confidence[drawn], minlength=bins)).sum() / n
            for drawn in (rng.integers(0, n, n) for _ in range(draws))]
    return [float(value) for value in np.percentile(eces, [2.5, 97.5])]


def mean_nll(logits, labels, temperature=1.0):
    """The mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    log_prob = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-log_prob[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(val_logits, val_labels):
    """T > 0 minimising `mean_nll` on validation, by a bounded, deterministic search on log T (T > 1 softens). A model
    separating validation perfectly has no optimum: T far below 1 then means validation is too small or easy."""
    logits, labels = np.asarray(val_logits, dtype=np.float64), np.asarray(val_labels)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"expected logits of shape (n, classes) and n labels; got {logits.shape} and {labels.shape}")
    result = minimize_scalar(lambda log_t: mean_nll(logits, labels, math.exp(log_t)),
                             bounds=tuple(math.log(t) for t in TEMPERATURE_BOUNDS),
                             method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def fit_and_measure(val_logits, val_labels, test_logits, test_labels):
    """The temperature fitted on validation (never test), and the test split's ECE (with its interval) and mean NLL
    before and after it. The saved model stays raw; whatever predicts with it divides its logits by T."""
    temperature, test_labels = fit_temperature(val_logits, np.asarray(val_labels)), np.asarray(test_labels)
    before, after = (positive_probability(test_logits, t) for t in (1.0, temperature))
    tables = [reliability_table(p, test_labels) for p in (before, after)]
    return {"temperature": temperature, "ece_uncalibrated": table_calibration_error(tables[0]),
            "ece": table_calibration_error(tables[1]), "bins": CALIBRATION_BINS,
            "ece_uncalibrated_ci95": ece_interval(before, test_labels), "ece_ci95": ece_interval(after, test_labels),
            "nll_uncalibrated": mean_nll(test_logits, test_labels), "nll": mean_nll(test_logits, test_labels, temperature),
            "val_reviews": len(val_labels), "tables": tables}


def as_saved(fitted):
    """What a stage's calibration.json holds of `fit_and_measure`'s result: all but the reliability tables."""
    return {key: value for key, value in fitted.items() if key != "tables"}


def with_calibration(scores, fitted):
    """A model's test metrics (its stage's metrics.json) with its calibration's ECE before and after, and T."""
    return {**scores, **{key: fitted[key] for key in ("ece", "ece_uncalibrated", "temperature")}}


def lowered_nll(fitted):
    """Whether the temperature lowered the test reviews' mean NLL (False where never measured): only then calibrated."""
    return fitted.get("nll", math.inf) < fitted.get("nll_uncalibrated", -math.inf)


def calibration_summary(fitted):
    """A calibration record in words: T, ECE with its interval and mean NLL on the test reviews, before and after."""
    ece = {key: f"{fitted[key]:.3f} (95% interval {'{:.3f}-{:.3f}'.format(*fitted.get(key + '_ci95', [math.nan] * 2))})"
           for key in ("ece_uncalibrated", "ece")}
    text = (f"Temperature T = {fitted['temperature']:.3f}, fitted on {fitted['val_reviews']:,} validation reviews. On the "
            f"test reviews, ECE ({fitted['bins']} bins) {ece['ece_uncalibrated']} before, {ece['ece']} after")
    if "nll" not in fitted:
        return text + "."
    return (text + f"; mean NLL {fitted['nll_uncalibrated']:.4f} before, {fitted['nll']:.4f} after: the temperature "
            + ("lowered it." if lowered_nll(fitted) else "did not lower it, so the raw probabilities are no worse."))


def fold_temperature(model, temperature):
    """Divide the classifier's weights and bias by `temperature`, in place, so that every reader of an exported copy
    gets calibrated logits; `model.config.calibration_temperature` records it (raw = calibrated * recorded). Fold
    before quantizing: a quantized classifier is refused."""
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
    """A run's `who` ('teacher' or 'student') as saved, and the temperature its logits still need: the one its stage
    fitted, less any its config records as folded in (the demo, helpers.predict and the export use it)."""
    model = load_trained(run.require(layout.MODEL_FOLDERS[who]))
    fitted = read_json(run.require(layout.CALIBRATION_FILES[who]))["temperature"]
    return model, fitted / recorded_temperature(model.config)
