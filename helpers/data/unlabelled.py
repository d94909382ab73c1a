"""Unlabelled reviews for distillation (as DistilBERT and TinyBERT): the teacher labels them, the student learns its
soft labels. `unlabelled`: "sample" (a shipped slice of IMDB's `unsup` split), a Parquet/CSV file with `text`, or a hub
dataset's "unsupervised" split; `n_unlabelled` drawn, seeded. Dropped first: reviews equal to a labelled one (after
`clean_review`) and those holding an extra test sentence of CONTAINED_CHARS or more (shorter: common phrases).
"""

import pandas as pd

from helpers.core.errors import ConfigError, DataError
from helpers.core.files import project_path
from helpers.data.hub import hub_unsupervised
from helpers.data.imdb import SAMPLE_DIR, clean_review, column_names, read_table

SHIPPED_FILE = SAMPLE_DIR / "unlabelled.parquet"
CONTAINED_CHARS = 40
NO_LABEL = -1  # the label column's value for an unlabelled review (helpers.distill.distillation reads it)


def check_unlabelled(spec):
    """The quick check, before any stage: a file exists and has a text column (hub names are tried later)."""
    if (file := _file(spec)) is None:
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
    return path if path.exists() or spec.startswith((".", "/", "~")) or spec.endswith((".parquet", ".csv")) else None


def load_unlabelled(spec):
    """Every unlabelled review `spec` names, once each, as a frame with one `text` column."""
    return _unique_reviews(spec)[0]


def _unique_reviews(spec):
    """`load_unlabelled`'s frame and the extra copies it left out (after `clean_review`; IMDB's unsup repeats some)."""
    if (file := _file(spec)) is None:
        texts = hub_unsupervised(spec)
    else:
        check_unlabelled(spec)
        texts = read_table(file)["text"]
    texts = pd.Series(texts, dtype=object).dropna().astype(str)
    texts = texts[texts.str.strip() != ""]
    copies = texts.map(clean_review).duplicated().to_numpy()
    return pd.DataFrame({"text": texts[~copies].to_numpy()}), int(copies.sum())


def without_test_texts(frame, labelled_reviews, test_sentences):
    """`frame` less reviews equal to a labelled review or test text, or holding a test text of CONTAINED_CHARS+."""
    equal = {clean_review(text) for text in (*labelled_reviews, *test_sentences)}
    inside = [clean_review(text) for text in test_sentences if len(clean_review(text)) >= CONTAINED_CHARS]
    cleaned = frame["text"].map(clean_review)
    keep = [review not in equal and not any(text in review for text in inside) for review in cleaned]
    return frame[keep].reset_index(drop=True)


def draw_unlabelled(spec, n, seed, labelled_reviews, test_sentences=()):
    """`n` reviews (all when None) labelled NO_LABEL, drawn with `seed` after `without_test_texts`, and what was
    dropped ("copies" in the source, "in_earlier": examined and refused); checked a shuffled chunk at a time."""
    candidates, copies = _unique_reviews(spec)
    shuffled = candidates.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    wanted = len(shuffled) if n is None else n
    kept, start, chunk = [], 0, max(256, 2 * wanted)
    while start < len(shuffled) and sum(map(len, kept)) < wanted:
        kept.append(without_test_texts(shuffled.iloc[start:start + chunk], labelled_reviews, test_sentences))
        start += chunk
    drawn = pd.concat(kept, ignore_index=True) if kept else shuffled.iloc[:0]
    if n is not None and len(drawn) < n:
        raise DataError(f"unlabelled {spec!r}: {len(drawn)} usable reviews, fewer than n_unlabelled {n}; "
                        "lower n_unlabelled or give a larger source")
    dropped = {"copies": copies, "in_earlier": min(start, len(shuffled)) - len(drawn)}
    return drawn.iloc[:wanted].assign(label=NO_LABEL), dropped
