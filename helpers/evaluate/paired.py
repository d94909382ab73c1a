"""Two models scored on the same reviews: the accuracy difference with a paired interval, and McNemar's test.
Models that err on mostly the same reviews differ less by chance than their two separate intervals suggest.
"""
import numpy as np
from scipy.stats import binomtest

from helpers.core.sentiment import predicted_labels

BOOTSTRAP_DRAWS = 10_000
BOOTSTRAP_SEED = 0
# (a, b), read "a - b": each model against the one it is made from or meant to beat
PAIRS = (("teacher", "baseline"), ("student", "teacher"), ("student_int8", "student"), ("student_onnx", "student"),
         ("student_onnx_int8", "student"))


def paired_difference(labels, prob_a, prob_b, draws=BOOTSTRAP_DRAWS, seed=BOOTSTRAP_SEED):
    """a's accuracy minus b's on the same reviews, its 95% interval from a seeded paired bootstrap (reviews drawn
    with replacement, both models' answers on a review kept together), McNemar's exact p-value (a binomial test
    of the reviews only a gets right against those only b does), those two counts, and the reviews."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("a paired comparison needs at least one review scored by both models")
    right_a, right_b = predicted_labels(prob_a) == labels, predicted_labels(prob_b) == labels
    only_a, only_b, n = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum()), len(labels)
    # a review adds +1, -1 or 0 to the difference, so one bootstrap draw is one multinomial draw of the three counts
    counts = np.random.default_rng(seed).multinomial(n, [only_a / n, only_b / n, 0.0], size=draws)
    low, high = np.percentile((counts[:, 0] - counts[:, 1]) / n, [2.5, 97.5])
    p_value = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"difference": (only_a - only_b) / n, "ci95": [float(low), float(high)], "p_mcnemar": float(p_value),
            "only_a_right": only_a, "only_b_right": only_b, "n": n}


def paired_comparisons(labels, probs, pairs=PAIRS):
    """{"a - b": `paired_difference`} for each pair of `pairs` in `probs`, on the reviews both scored (not NaN)."""
    labels, out = np.asarray(labels), {}
    for a, b in pairs:
        if a in probs and b in probs:
            both = ~(np.isnan(probs[a]) | np.isnan(probs[b]))
            if both.any():
                out[f"{a} - {b}"] = paired_difference(labels[both], np.asarray(probs[a])[both], np.asarray(probs[b])[both])
    return out


def verdict(stats):
    """"within noise" when the paired interval holds 0, else which way the difference goes."""
    low, high = stats["ci95"]
    return "within noise" if low <= 0 <= high else "beyond noise, " + ("a gain" if stats["difference"] > 0 else "a loss")


def paired_sentence(name, stats):
    """'student - teacher: -0.4 points (95% paired interval -1.6 to +0.8; McNemar p 0.52; 1,000 reviews), within noise'."""
    low, high = stats["ci95"]
    return (f"{name}: {100 * stats['difference']:+.1f} points (95% paired interval {100 * low:+.1f} to {100 * high:+.1f}; "
            f"McNemar p {stats['p_mcnemar']:.2g}; {stats['n']:,} reviews), {verdict(stats)}")
