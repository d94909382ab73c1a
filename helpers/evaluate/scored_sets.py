"""The test sets every model is scored on (the run's test split, then the extra sets) and the probabilities the
evaluate stage (teacher, baseline) and the distill stage (student, its CPU copies) score on them."""
import numpy as np
import pandas as pd

from helpers.data import extra_sets, imdb
from helpers.evaluate import baseline
from helpers.tokens import tokens

MAIN = extra_sets.MAIN  # the run's own test split


def test_frames(run):
    """{set: frame with text and label}: the run's test split first, then the extra sets."""
    main = imdb.load_splits(run.require("data"), names=("test",))["test"]
    return {MAIN: main, **extra_sets.load_extra_tests(run.params.extra_test)}


def tokenized_sets(run, frames, tokenizer):
    """{set: tokenized dataset}: the test split as the tokenize stage wrote it, the extra sets tokenized alike."""
    extras = {name: frame for name, frame in frames.items() if name != MAIN}
    return {MAIN: tokens.load_tokenized(run.require("tokenize"))["test"],
            **tokens.tokenize_splits(extras, tokenizer, run.params.max_length, run.params.truncation_head)}


def fit_run_baseline(run):
    """The TF-IDF baseline on the run's training reviews, C chosen on its validation split."""
    splits = imdb.load_splits(run.require("data"), names=("train", "val"))
    return baseline.fit_baseline(splits["train"]["text"], splits["train"]["label"], splits["val"]["text"],
                                 splits["val"]["label"], run.params.seed)


def probabilities_frame(probs):
    """{set: {model: probs}} as one long frame (set, review, one column per model), for the next stage."""
    return pd.concat([pd.DataFrame({"set": name, "review": np.arange(len(next(iter(by_model.values())))), **by_model})
                      for name, by_model in probs.items()], ignore_index=True)


def probabilities_by_set(frame):
    """The inverse of probabilities_frame: {set: {model: probs}}."""
    return {name: {model: part[model].to_numpy() for model in part.columns if model not in ("set", "review")}
            for name, part in frame.groupby("set", sort=False)}


def cpu_samples(n_test, n_sample, n_speed, seed):
    """Sorted positions of the test reviews scored on the CPU (at most `n_sample`, all when None) and of those timed:
    the first `n_speed` of the same seeded draw, so every CPU figure rests on the same reviews."""
    drawn = np.random.default_rng(seed).permutation(n_test)[:n_sample or n_test]
    return np.sort(drawn), np.sort(drawn[:n_speed])


def baseline_footprint(bag_of_words, test_texts, params):
    """The baseline's row of the distill stage's comparison (learnt numbers, size, CPU reviews/s on the reviews every
    model is timed on), measured here where it is fitted, so the distill stage need not fit it again."""
    _, timed = cpu_samples(len(test_texts), params.n_cpu_test, params.n_speed, params.seed)
    n_params, size_mb, speed = baseline.footprint(bag_of_words, [test_texts.iloc[i] for i in timed])
    return {"params": n_params, "size_mb": size_mb, "reviews_per_s": speed}
