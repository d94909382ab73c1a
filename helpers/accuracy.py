"""The decision rule and the accuracy interval, in NumPy alone: helpers.metrics scores with them, and
serving an exported model (helpers.predict on an export folder) uses them without importing torch."""
import numpy as np

DECISION_THRESHOLD = 0.5  # P(positive) at or above it is predicted positive


def predicted_labels(prob_positive):
    return (np.asarray(prob_positive) >= DECISION_THRESHOLD).astype(int)


def accuracy_interval(accuracy, n, z=1.959964):
    """The Wilson score interval of an accuracy measured on n reviews ([low, high]; 95% for the default z).

    Unlike accuracy +- z * standard error, it stays within [0, 1] and is honest near 0 and 1.
    On 1,000 reviews near 0.86 it is about +-2.2 points: differences smaller than that between
    two runs may be noise.
    """
    if n == 0:
        return [float("nan"), float("nan")]
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]
