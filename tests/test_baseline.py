import inspect

import numpy as np
import pytest

from helpers.data import imdb
from helpers.evaluate import baseline, metrics
from helpers.runs.config import resolve_params

FILLER = "the film story actor scene plot music camera ending script".split()


def _review(rng, *cues):
    """Eight filler words with the cue words put in at random places."""
    words = list(rng.choice(FILLER, size=8)) + list(cues)
    rng.shuffle(words)
    return " ".join(words)


def _toy(n, seed):
    """Reviews whose label is given away by one word, half of each label."""
    rng = np.random.default_rng(seed)
    labels = [i % 2 for i in range(n)]
    return [_review(rng, "excellent" if label else "terrible") for label in labels], labels


def test_a_separable_toy_set_is_learnt_perfectly():
    train_texts, train_labels = _toy(200, seed=0)
    val_texts, val_labels = _toy(20, seed=1)
    test_texts, test_labels = _toy(40, seed=2)
    fitted = baseline.fit_baseline(train_texts, train_labels, val_texts, val_labels, seed=0)
    prob = baseline.baseline_proba(fitted, test_texts)
    assert prob.shape == (40,) and ((prob >= 0) & (prob <= 1)).all()
    assert metrics.classification_metrics(test_labels, prob)["accuracy"] == 1.0


def test_c_is_the_best_on_validation_and_the_validation_labels_decide_it():
    # 4 of the training reviews say "good" yet are negative, and all hold the rare word "twist": a weakly
    # regularised model (large C) learns that exception, a strongly regularised one follows "good"
    rng = np.random.default_rng(0)
    train = ([(_review(rng, "good"), 1) for _ in range(40)] + [(_review(rng, "bad"), 0) for _ in range(36)]
             + [(_review(rng, "good", "twist"), 0) for _ in range(4)])
    train_texts, train_labels = zip(*train)
    val_texts = ([_review(rng, "good", "twist") for _ in range(10)] + [_review(rng, "good") for _ in range(5)]
                 + [_review(rng, "bad") for _ in range(5)])
    chosen = {}
    for twist_label in (0, 1):  # the same validation reviews, the twist reviews labelled one way or the other
        val_labels = [twist_label] * 10 + [1] * 5 + [0] * 5
        fitted = baseline.fit_baseline(train_texts, train_labels, val_texts, val_labels, seed=0)
        assert set(fitted.val_accuracy_by_c) == set(baseline.C_GRID)
        assert fitted.val_accuracy_by_c[fitted.c] == max(fitted.val_accuracy_by_c.values())
        assert fitted.pipeline.named_steps["logreg"].C == fitted.c
        chosen[twist_label] = fitted.c
    # where validation rewards the exception a larger C wins, where it does not a smaller one; neither
    # is scikit-learn's default C = 1
    assert chosen[0] > 1 > chosen[1]


def test_the_api_takes_no_test_split_and_fits_on_training_reviews_only():
    assert list(inspect.signature(baseline.fit_baseline).parameters) == [
        "train_texts", "train_labels", "val_texts", "val_labels", "seed", "c_grid"]
    train_texts, train_labels = _toy(40, seed=0)
    val_texts, val_labels = _toy(10, seed=1)
    val_texts = [text + " unseenword" for text in val_texts]  # in every validation review, no training review
    fitted = baseline.fit_baseline(train_texts, train_labels, val_texts, val_labels, seed=0)
    vocabulary = fitted.pipeline.named_steps["tfidf"].vocabulary_
    assert "unseenword" not in vocabulary and "excellent" in vocabulary


def test_line_break_tags_do_not_become_features():
    assert baseline.vectorizer_text("Great<br /><br />FILM<BR>ever<br/>") == "great film ever"
    train_texts, train_labels = _toy(40, seed=0)
    train_texts = [text.replace(" ", " <br /><br /> ", 1) for text in train_texts]
    val_texts, val_labels = _toy(10, seed=1)
    fitted = baseline.fit_baseline(train_texts, train_labels, val_texts, val_labels, seed=0)
    vocabulary = fitted.pipeline.named_steps["tfidf"].vocabulary_
    assert not [term for term in vocabulary if "br" in term.split()]


def test_the_same_seed_gives_the_same_model():
    train_texts, train_labels = _toy(40, seed=0)
    val_texts, val_labels = _toy(10, seed=1)
    first, second = (baseline.fit_baseline(train_texts, train_labels, val_texts, val_labels, seed=3) for _ in range(2))
    np.testing.assert_array_equal(baseline.baseline_proba(first, val_texts), baseline.baseline_proba(second, val_texts))


@pytest.fixture(scope="module")
def quick_splits():
    """The `quick` profile's split of the committed sample: 1,800 train, 200 validation, 1,000 test reviews."""
    return imdb.make_splits(resolve_params("quick"))


def test_on_the_committed_sample_it_is_well_above_chance(quick_splits):
    train, val, test = quick_splits["train"], quick_splits["val"], quick_splits["test"]
    assert (len(train), len(val), len(test)) == (1800, 200, 1000)
    fitted = baseline.fit_baseline(train["text"], train["label"], val["text"], val["label"], seed=0)
    scores = metrics.classification_metrics(test["label"], baseline.baseline_proba(fitted, test["text"]))
    assert scores["accuracy"] > 0.8
