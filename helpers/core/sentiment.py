"""The two classes and how logits become a decision, in NumPy alone: every stage and both serving backends use
these, so an exported model is served (helpers.predict on an export folder) without importing torch."""
import numpy as np

LABEL_NAMES = {0: "negative", 1: "positive"}
# the names saved models and helpers.predict answer with, as the ecosystem's sentiment models do (transformers.pipeline)
PIPELINE_LABELS = {label: name.upper() for label, name in LABEL_NAMES.items()}  # 0: NEGATIVE, 1: POSITIVE
LABEL_WORDS = {"0": 0, "1": 1, "neg": 0, "pos": 1, "negative": 0, "positive": 1}  # what a labelled file may hold
DECISION_THRESHOLD = 0.5  # P(positive) at or above it is predicted positive


def positive_probability(logits, temperature=1.0):
    """P(positive) for each row of two-class logits, softmax computed in float64 whatever the logits' dtype (an
    fp16 model's logits would otherwise round); `temperature` is a calibration's (helpers.evaluate.calibration)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp[:, 1] / exp.sum(axis=-1)


def predicted_labels(prob_positive):
    return (np.asarray(prob_positive) >= DECISION_THRESHOLD).astype(int)


def accuracy_interval(accuracy, n, z=1.959964):
    """The Wilson score interval of an accuracy on n reviews ([low, high]; 95% for the default z), honest near 0
    and 1. On 1,000 reviews near 0.86 it is about +-2.2 points: smaller differences between runs may be noise."""
    if n == 0:
        return [float("nan"), float("nan")]
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]
