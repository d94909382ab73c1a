"""Unlabelled reviews for distillation (helpers.data.unlabelled): drawn, seeded, free of test texts."""
import pandas as pd
import pytest

from helpers.core.errors import ConfigError, DataError
from helpers.data import unlabelled

SENTENCE = "This is one of the finest films of the decade, by far."  # >= 40 characters


def _frame(texts):
    return pd.DataFrame({"text": texts})


def test_reviews_holding_a_test_text_are_dropped():
    frame = _frame(["A review. " + SENTENCE + " More words.", "The exact test review.", "Great movie. Nothing else.",
                    "An innocent review."])
    kept = unlabelled.without_test_texts(frame, ["The exact test review."], [SENTENCE, "Great movie."])
    # the long sentence inside a review and the equal review go; a short common phrase inside a review stays
    assert kept["text"].tolist() == ["Great movie. Nothing else.", "An innocent review."]


def test_the_shipped_slice_is_clean_of_the_short_sentences_and_the_sample_test_reviews():
    from helpers.data.extra_sets import SHIPPED
    from helpers.data.imdb import SAMPLE_DIR

    shipped = unlabelled.load_unlabelled("sample")
    assert len(shipped) == 3000 and shipped["text"].is_unique
    tests = pd.read_parquet(SAMPLE_DIR / "test.parquet")["text"]
    sentences = pd.read_parquet(SHIPPED["short"])["text"]
    assert len(unlabelled.without_test_texts(shipped, tests, sentences)) == len(shipped)


def test_a_draw_is_seeded_sized_and_unlabelled(tmp_path):
    file = tmp_path / "unsup.csv"
    _frame([f"review number {i}" for i in range(300)] + ["x " + SENTENCE]).to_csv(file, index=False)
    a, _ = unlabelled.draw_unlabelled(str(file), 50, seed=1, labelled_reviews=["review number 7"], test_sentences=[SENTENCE])
    b, _ = unlabelled.draw_unlabelled(str(file), 50, seed=1, labelled_reviews=["review number 7"], test_sentences=[SENTENCE])
    assert a.equals(b) and len(a) == 50 and set(a["label"]) == {unlabelled.NO_LABEL}
    every, dropped = unlabelled.draw_unlabelled(str(file), None, seed=2, labelled_reviews=["review number 7"],
                                                test_sentences=[SENTENCE])
    assert len(every) == 299 and "review number 7" not in set(every["text"])
    assert dropped == {"copies": 0, "in_earlier": 2}
    with pytest.raises(DataError, match="299 usable reviews, fewer than n_unlabelled 400"):
        unlabelled.draw_unlabelled(str(file), 400, seed=1, labelled_reviews=["review number 7"], test_sentences=[SENTENCE])


def test_unlabelled_copies_and_reviews_of_any_split_are_dropped_after_cleaning(tmp_path):
    file = tmp_path / "unsup.csv"
    texts = ["A fine film.<br /><br />Really.", "A fine film. Really.", "In validation.", "In train.", "Kept."]
    _frame(texts).to_csv(file, index=False)
    drawn, dropped = unlabelled.draw_unlabelled(str(file), None, seed=0, labelled_reviews=["In  validation.", "In train. "])
    assert sorted(drawn["text"]) == sorted([texts[0], "Kept."])  # the first of two copies stays
    assert dropped == {"copies": 1, "in_earlier": 2}


def test_bad_sources_are_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="not a Parquet or CSV file"):
        unlabelled.check_unlabelled(str(tmp_path / "missing.parquet"))
    _frame(["x"]).rename(columns={"text": "review"}).to_csv(tmp_path / "no_text.csv", index=False)
    with pytest.raises(DataError, match="no 'text' column"):
        unlabelled.check_unlabelled(str(tmp_path / "no_text.csv"))
    unlabelled.check_unlabelled("sample")  # the shipped slice passes
    unlabelled.check_unlabelled("stanfordnlp/imdb")  # hub names are tried by the data stage, not here
