"""Unlabelled reviews for distillation: the teacher labels them, the student learns from its soft labels.

DistilBERT and TinyBERT distil on far more text than the labelled set: a student that sees only
the teacher's training reviews learns the teacher's answers on those, not how it reads text in
general. The `unlabelled` parameter names where the extra reviews come from, `n_unlabelled` how
many are drawn (seeded):

- "sample": IMDB's unsupervised split (`unsup`, 50,000 reviews; Maas et al. 2011), a slice of
  which ships in `helpers/data/sample_data/unlabelled.parquet` (offline default, `quick`);
- a Parquet or CSV file with a `text` column (any `label` column is ignored), relative paths
  from the project root;
- a hub dataset name, e.g. "stanfordnlp/imdb": its "unsupervised" split (helpers.data.hub).

Reviews that hold a test text word for word are dropped before the draw: one equal to a test
review, or one containing a sentence of an extra test set of at least CONTAINED_CHARS characters
(the short-sentence set was cut from IMDB reviews, a few of them in `unsup`). Shorter sentences
are left out of that check because common phrases ("a great movie.") occur in many innocent reviews.
"""

import pandas as pd

from helpers.core.errors import ConfigError, DataError
from helpers.core.files import project_path
from helpers.data.imdb import SAMPLE_DIR, column_names, read_table

SHIPPED_FILE = SAMPLE_DIR / "unlabelled.parquet"
CONTAINED_CHARS = 40
NO_LABEL = -1  # the label column's value for an unlabelled review (helpers.distill.distillation reads it)


def check_unlabelled(spec):
    """The quick check, before any stage: a file exists and has a text column (hub names are tried later)."""
    file = _file(spec)
    if file is None:
        return
    if not file.is_file() or file.suffix not in (".parquet", ".csv"):
        raise ConfigError(f"unlabelled {spec!r}: {file} is not a Parquet or CSV file; give 'sample', a .parquet or "
                          ".csv file with a text column, or a hub dataset name with an 'unsupervised' split")
    if "text" not in column_names(file):
        raise DataError(f"{file}: no 'text' column; unlabelled reviews need one (other columns are ignored)")


def _file(spec):
    """The file `spec` names; None for a hub dataset name."""
    if spec == "sample":
        return SHIPPED_FILE
    path = project_path(spec)
    if path.exists() or spec.startswith((".", "/", "~")) or spec.endswith((".parquet", ".csv")):
        return path
    return None


def load_unlabelled(spec):
    """Every unlabelled review `spec` names, once each, as a frame with one `text` column."""
    file = _file(spec)
    if file is None:
        from helpers.data.hub import hub_unsupervised

        texts = hub_unsupervised(spec)
    else:
        check_unlabelled(spec)
        texts = read_table(file)["text"]
    texts = pd.Series(texts, dtype=object).dropna().astype(str)
    texts = texts[texts.str.strip() != ""].drop_duplicates()  # IMDB's unsup split repeats 493 of its texts
    return pd.DataFrame({"text": texts.to_numpy()})


def without_test_texts(frame, test_reviews, test_sentences):
    """`frame` without the reviews that equal a test review or text, or contain a test sentence (a text of
    an extra test set) of CONTAINED_CHARS characters or more."""
    equal = {text.strip() for text in (*test_reviews, *test_sentences)}
    inside = [text.strip() for text in test_sentences if len(text.strip()) >= CONTAINED_CHARS]
    keep = [review.strip() not in equal and not any(text in review for text in inside) for review in frame["text"]]
    return frame[keep].reset_index(drop=True)


def draw_unlabelled(spec, n, seed, test_reviews, test_sentences=()):
    """`n` unlabelled reviews (all when n is None), drawn with `seed` after the test texts are taken out
    (`without_test_texts`), with label NO_LABEL. Candidates are shuffled first and checked in that order,
    a chunk at a time, so a draw of n searches about n reviews for test sentences, not all 50,000."""
    shuffled = load_unlabelled(spec).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    wanted = len(shuffled) if n is None else n
    kept, start, chunk = [], 0, max(256, 2 * wanted)
    while start < len(shuffled) and sum(map(len, kept)) < wanted:
        kept.append(without_test_texts(shuffled.iloc[start:start + chunk], test_reviews, test_sentences))
        start += chunk
    drawn = pd.concat(kept, ignore_index=True) if kept else shuffled.iloc[:0]
    if n is not None and len(drawn) < n:
        raise DataError(f"unlabelled {spec!r}: {len(drawn)} usable reviews, fewer than n_unlabelled {n}; "
                        "lower n_unlabelled or give a larger source")
    return drawn.iloc[:wanted].assign(label=NO_LABEL)
