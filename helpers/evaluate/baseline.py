"""The bag-of-words baseline beside every model: TF-IDF n-grams and a logistic regression, chosen and fitted the
way the teacher is (C picked on validation, fitted on the training reviews; no function here takes the test split).

    baseline = fit_baseline(train.text, train.label, val.text, val.label, seed)
    prob = baseline_proba(baseline, test.text)   # scored like the transformers
"""
import pickle
from dataclasses import dataclass
from functools import partial

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from helpers.core.sentiment import predicted_labels
from helpers.core.timing import warmed_timing
from helpers.data.imdb import clean_review

C_GRID = (0.1, 0.3, 1, 3, 10, 30, 100)  # inverse regularisation strengths tried on validation
NGRAM_RANGE = (1, 2)  # word unigrams and bigrams
MIN_DF = 2  # an n-gram seen in one training review only is noise, not vocabulary
MAX_ITER = 1000  # lbfgs converges well within this on TF-IDF features
# A problem this small gains nothing from parallel threads, and on a busy CPU (beside torch's own
# thread pool, say) OpenMP's waiting threads made the lbfgs fits far slower: fit in one.
FIT_THREADS = 1


@dataclass(frozen=True)
class Baseline:
    """A fitted baseline: the TF-IDF + logistic regression pipeline, its C, and validation accuracy by C tried."""
    pipeline: Pipeline
    c: float
    val_accuracy_by_c: dict


def vectorizer_text(text):
    """What the vectorizer reads: the cleaned review, lower-cased (a custom preprocessor replaces sklearn's)."""
    return clean_review(text).lower()


def fit_baseline(train_texts, train_labels, val_texts, val_labels, seed, c_grid=C_GRID):
    """The baseline whose C scores best on validation (ties: the smaller C), fitted on the training reviews only."""
    vectorizer = TfidfVectorizer(preprocessor=vectorizer_text, ngram_range=NGRAM_RANGE, min_df=MIN_DF,
                                 sublinear_tf=True)
    train_features = vectorizer.fit_transform(list(train_texts))
    val_features, val_labels = vectorizer.transform(list(val_texts)), np.asarray(val_labels)
    classifiers, val_accuracy_by_c = {}, {}
    for c in sorted(c_grid):
        # lbfgs is deterministic; the seed is passed so that a change of solver stays reproducible
        classifier = LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER, random_state=seed)
        with threadpool_limits(limits=FIT_THREADS):
            classifiers[c] = classifier.fit(train_features, np.asarray(train_labels))
        val_prob = _positive_column(classifiers[c], val_features)
        val_accuracy_by_c[c] = float(accuracy_score(val_labels, predicted_labels(val_prob)))
    best_c = max(val_accuracy_by_c, key=val_accuracy_by_c.get)  # the first maximum: the smallest C
    pipeline = Pipeline([("tfidf", vectorizer), ("logreg", classifiers[best_c])])
    return Baseline(pipeline=pipeline, c=best_c, val_accuracy_by_c=val_accuracy_by_c)


def baseline_proba(baseline, texts):
    """P(positive) for each text, as a numpy array: what `metrics.classification_metrics` scores."""
    return _positive_column(baseline.pipeline, list(texts))


def _positive_column(model, inputs):
    # scikit-learn orders the columns by class value; look the positive class up rather than assume it
    return model.predict_proba(inputs)[:, list(model.classes_).index(1)]


def footprint(baseline, texts):
    """(learnt numbers, MB as pickled, warm CPU reviews/s on `texts`): the baseline's row of the comparison."""
    regression = baseline.pipeline.named_steps["logreg"]
    seconds = warmed_timing(partial(baseline_proba, baseline), texts, texts)[1]
    return (int(regression.coef_.size + regression.intercept_.size), len(pickle.dumps(baseline.pipeline)) / 1e6,
            len(texts) / seconds)
